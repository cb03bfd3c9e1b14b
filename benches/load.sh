#!/usr/bin/env bash
# benches/load.sh — HTTP load test of edgequota (issue 2, "Performance").
#
# What it measures: the release binary, started on a fresh temporary data directory,
# with 10,000 seeded orgs, driven by `wrk` with the same threads, connections and
# duration for three routes, one after the other in the same run:
#
#   ceiling  GET  /api/diag/ping     constant JSON: the physical ceiling of the HTTP front
#   check    POST /api/quota/check   a random org per request (answered from memory)
#   record   POST /api/usage/record  a random org and a unique request_id per request
#                                    (answered only once durable: group commit + fsync)
#
# For each it prints requests/s, latency p50/p99 and the count of non-200 answers and
# socket errors, then the ratio check/ceiling. Targets: check ≥ 0.8 × ceiling, record
# ≥ 20,000 req/s.
#
# Run (from anywhere):  bash benches/load.sh
# Knobs (environment):  DURATION=15 (seconds per route)  CONNECTIONS=64  WRK_THREADS=2
#                       ORGS=10000  WARMUP=3 (seconds of unmeasured load before each route)
#                       SKIP_BUILD=1 (use the existing release binary)
#                       ROUTES="ceiling check record" (which routes, in this order)
# Needs: cargo, curl, python3; installs `wrk` with apt-get when it is missing.
#
# Any EDGEQUOTA__* variable set by the caller reaches the server too, e.g.
#   EDGEQUOTA__ENGINE__ARBITERS=1 bash benches/load.sh
#
# On this 2-core machine wrk competes with the server for the CPU. With one wrk thread
# the ceiling route is bound by the client (~55k req/s here, against ~69k with two), which
# flatters the check/ceiling ratio; two wrk threads measure the higher, more honest
# ceiling, so WRK_THREADS=2 is the default. The server runs with its defaults (HTTP
# workers and actor arbiters: one per core).
set -euo pipefail

DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ORGS=${ORGS:-10000}
WARMUP=${WARMUP:-3}
ROUTES=${ROUTES:-ceiling check record}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# --- build ---------------------------------------------------------------------------
# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
build_binary

# --- wrk -----------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    echo "==> installing wrk"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk >/dev/null
fi

# --- start the server ----------------------------------------------------------------
start_server

# --- seed orgs -----------------------------------------------------------------------
echo "==> seeding $ORGS orgs"
started=$(date +%s.%N)
python3 - "$BASE" "$SERVICE_TOKEN" "$ORGS" "$WORK/orgs.txt" <<'PY'
import http.client, json, sys, threading, urllib.parse
base, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
url = urllib.parse.urlparse(base)
ids, lock, failures = [], threading.Lock(), []
def worker(indices):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    for i in indices:
        body = json.dumps({"name": f"load org {i}", "ownerUserId": f"user_{i}"})
        conn.request("POST", "/api/orgs.create", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            failures.append((resp.status, data[:200]))
            continue
        with lock:
            ids.append(json.loads(data)["orgId"])
threads = [threading.Thread(target=worker, args=(range(t, n, 32),)) for t in range(32)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} org creations failed, e.g. {failures[0]}")
with open(out, "w") as f:
    f.write("\n".join(ids) + "\n")
PY
echo "    $(wc -l <"$WORK/orgs.txt") orgs in $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s"

# --- the wrk script (one for all three routes, so their client-side cost is equal) ----
cat >"$WORK/load.lua" <<'LUA'
-- MODE = ceiling | check | record; ORGS_FILE = one org id a line; TOKEN = service token
local mode = os.getenv("MODE")
local token = os.getenv("TOKEN")
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local orgs, n, seq, prefix, headers
non200 = 0 -- global: done() reads it with thread:get

function init(args)
  non200 = 0
  seq = 0
  math.randomseed(os.time() * 1000 + tid)
  prefix = string.format("load-%d-%d-%d", os.time(), tid, math.random(1, 1000000000))
  orgs = {}
  for line in io.lines(os.getenv("ORGS_FILE")) do
    if #line > 0 then orgs[#orgs + 1] = line end
  end
  n = #orgs
  headers = { ["authorization"] = "Bearer " .. token,
              ["content-type"] = "application/json" }
end

function request()
  if mode == "ceiling" then
    return wrk.format("GET", "/api/diag/ping", headers)
  end
  local org = orgs[math.random(n)]
  if mode == "check" then
    return wrk.format("POST", "/api/quota/check", headers,
      '{"orgId":"' .. org .. '","metric":"api_call"}')
  end
  seq = seq + 1
  return wrk.format("POST", "/api/usage/record", headers,
    '{"orgId":"' .. org .. '","metric":"api_call","value":1,"occurredAt":"'
    .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '","request_id":"' .. prefix .. "-" .. seq .. '"}')
end

function response(status, hdrs, body)
  if status ~= 200 then
    non200 = non200 + 1
    if non200 <= 3 then io.stderr:write("non-200 (" .. status .. "): " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non200") or 0) end
  local e = summary.errors
  io.write(string.format("RESULT %s %.1f %.1f %.1f %d %d %d\n",
    mode, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout, summary.requests))
end
LUA

run() { # run MODE: a warm-up, then the measured run; prints wrk's RESULT line
    local mode=$1
    if [[ "$WARMUP" -gt 0 ]]; then
        MODE=$mode TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" \
            wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/load.lua" "$BASE" \
            >/dev/null 2>&1
    fi
    echo "==> $mode: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s" >&2
    MODE=$mode TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" \
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/load.lua" "$BASE" \
        >"$WORK/$mode.out" 2>"$WORK/$mode.err" || { cat "$WORK/$mode.err" >&2; exit 1; }
    if [[ -s "$WORK/$mode.err" ]]; then sed 's/^/    /' "$WORK/$mode.err" >&2; fi
    grep '^RESULT' "$WORK/$mode.out"
}

RESULTS=()
for route in $ROUTES; do
    RESULTS+=("$(run "$route")")
done
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")

# --- report --------------------------------------------------------------------------
echo
echo "edgequota load test — $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s per route, $ORGS orgs"
python3 - "$RSS_KB" "${RESULTS[@]}" <<'PY'
import sys
rows = {}
for line in sys.argv[2:]:
    _, mode, rps, p50, p99, bad, errs, total = line.split()
    rows[mode] = dict(rps=float(rps), p50=float(p50), p99=float(p99),
                      bad=int(bad), errs=int(errs), total=int(total))
names = {"ceiling": "GET  /api/diag/ping (ceiling)",
         "check": "POST /api/quota/check",
         "record": "POST /api/usage/record"}
print(f"{'route':34} {'req/s':>10} {'p50':>10} {'p99':>10} {'non-200':>8} {'sock err':>8}")
for mode in rows:
    r = rows[mode]
    print(f"{names[mode]:34} {r['rps']:>10.0f} {r['p50']/1e3:>8.2f}ms {r['p99']/1e3:>8.2f}ms"
          f" {r['bad']:>8} {r['errs']:>8}")
print()
if "check" in rows and "ceiling" in rows:
    ratio = rows["check"]["rps"] / rows["ceiling"]["rps"]
    print(f"check / ceiling = {ratio:.2f}   (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT MET'})")
if "record" in rows:
    rec = rows["record"]["rps"]
    print(f"durable record  = {rec:.0f} req/s   (target >= 20000: {'met' if rec >= 20000 else 'NOT MET'})")
print(f"server RSS after the run: {int(sys.argv[1]) / 1024:.0f} MB")
PY
