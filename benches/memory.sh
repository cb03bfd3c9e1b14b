#!/usr/bin/env bash
# benches/memory.sh — resident memory of edgequota with 100,000 live org actors
# (issue 2, "Performance": ≤ 300 MB with 100k orgs touched, and under it after idle
# eviction).
#
# What it does: builds and starts the release binary on a fresh temporary data directory
# with a short actor idle TTL, creates ORGS orgs, touches each once with a quota check
# (so ORGS org actors are live), then reads the process's VmRSS (/proc/<pid>/status) and
# `edgequota_org_actors` (GET /metrics); waits until the idle actors have been stopped
# (at most 2 × TTL + 30 s) and reads both again.
#
# Run (from anywhere):  bash benches/memory.sh
# Knobs (environment):  ORGS=100000  IDLE_TTL=10 (seconds)  SKIP_BUILD=1
# Needs: cargo, curl, python3.
#
# The org creations and checks are sent by a small Python client that pipelines requests
# over a few keep-alive connections: a thread-per-request client is too slow to touch
# 100,000 orgs inside the idle TTL, and the first actors would be evicted before the last
# ones start. The touch phase's duration is printed; if it exceeds the TTL the live count
# read afterwards is below ORGS, and the script says so.
set -euo pipefail

ORGS=${ORGS:-100000}
IDLE_TTL=${IDLE_TTL:-10}
LIMIT_MB=300

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
build_binary
start_server EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS="$IDLE_TTL"
echo "    actor idle TTL ${IDLE_TTL}s"

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status"; }
actors() { curl -fsS "$BASE/metrics" | awk '$1 == "edgequota_org_actors" {print $2}'; }

echo "    idle server: RSS $(rss_mb) MB, org actors $(actors)"

# --- the pipelining client -----------------------------------------------------------
cat >"$WORK/pipeline.py" <<'PY'
"""create N  -> prints org ids;  check FILE -> checks every org id in FILE once.
Pipelines DEPTH requests at a time on each of CONNS keep-alive connections."""
import json, socket, sys, threading
CONNS, DEPTH = 16, 64
host, port, token, mode, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def req(path, body):
    b = body.encode()
    return (f"POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(b)}\r\n\r\n").encode() + b

def responses(sock, buf, n):
    """Reads n responses; returns [(status, body)] and the leftover buffer."""
    out = []
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
            continue
        head = buf[:end].decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        while len(buf) < end + 4 + length:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        out.append((int(head[9:12]), buf[end + 4:end + 4 + length]))
        buf = buf[end + 4 + length:]
    return out, buf

if mode == "create":
    work = [req("/api/orgs.create", json.dumps({"name": f"mem org {i}", "ownerUserId": f"user_{i}"}))
            for i in range(int(arg))]
else:
    work = [req("/api/quota/check", json.dumps({"orgId": o, "metric": "api_call"}))
            for o in open(arg).read().split()]

results, failures, lock = [], [], threading.Lock()
def worker(part):
    sock = socket.create_connection((host, port))
    buf = b""
    for i in range(0, len(part), DEPTH):
        batch = part[i:i + DEPTH]
        sock.sendall(b"".join(batch))
        got, buf = responses(sock, buf, len(batch))
        with lock:
            for status, body in got:
                if status != 200:
                    failures.append((status, body[:200]))
                elif mode == "create":
                    results.append(json.loads(body)["orgId"])
    sock.close()

threads = [threading.Thread(target=worker, args=(work[t::CONNS],)) for t in range(CONNS)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} requests failed, e.g. {failures[0]}")
if mode == "create":
    print("\n".join(results))
PY
pipeline() { python3 "$WORK/pipeline.py" 127.0.0.1 "$PORT" "$SERVICE_TOKEN" "$@"; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

echo "==> creating $ORGS orgs"
t0=$(now)
pipeline create "$ORGS" >"$WORK/orgs.txt"
echo "    $(wc -l <"$WORK/orgs.txt") orgs in $(since "$t0") s; RSS $(rss_mb) MB, org actors $(actors)"

echo "==> touching each org once with POST /api/quota/check"
t0=$(now)
pipeline check "$WORK/orgs.txt"
TOUCH_S=$(since "$t0")
LIVE_RSS=$(rss_mb)
LIVE_ACTORS=$(actors)
echo "    done in $TOUCH_S s (idle TTL ${IDLE_TTL}s)"
echo "    with actors live:  RSS $LIVE_RSS MB, edgequota_org_actors $LIVE_ACTORS"

echo "==> waiting for idle eviction"
t0=$(now)
deadline=$(($(date +%s) + 2 * IDLE_TTL + 30))
while :; do
    n=$(actors)
    [[ "$n" -eq 0 || $(date +%s) -ge $deadline ]] && break
    sleep 1
done
sleep 2 # let the allocator settle after the last stops
EVICTED_RSS=$(rss_mb)
EVICTED_ACTORS=$(actors)
echo "    after $(since "$t0") s: RSS $EVICTED_RSS MB, edgequota_org_actors $EVICTED_ACTORS"

echo
echo "edgequota memory test — $ORGS orgs, actor idle TTL ${IDLE_TTL}s"
printf '%-34s %10s %12s\n' "" "RSS" "org actors"
printf '%-34s %7s MB %12s\n' "after touching every org once" "$LIVE_RSS" "$LIVE_ACTORS"
printf '%-34s %7s MB %12s\n' "after idle eviction" "$EVICTED_RSS" "$EVICTED_ACTORS"
verdict() { [[ "$1" -le $LIMIT_MB ]] && echo met || echo "NOT MET"; }
echo "target: ≤ $LIMIT_MB MB with actors live: $(verdict "$LIVE_RSS"); after eviction: $(verdict "$EVICTED_RSS")"
if [[ "$LIVE_ACTORS" -lt "$ORGS" ]]; then
    echo "note: only $LIVE_ACTORS of $ORGS actors were live when measured (the touch phase took ${TOUCH_S}s; raise IDLE_TTL)"
fi
