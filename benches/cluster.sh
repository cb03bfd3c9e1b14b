#!/usr/bin/env bash
# benches/cluster.sh — edgequota on a Redis Cluster: 1 node against 3 nodes, same cluster,
# same machine, same run. A six-server Redis Cluster (3 masters, 3 replicas) is started
# in a temp dir; for each shape, three wrk processes (-t1 each, so the client cost is the
# same in both shapes) drive check, consume and record — all at node A for "1 node", one
# per node for "3 nodes". Prints req/s, p99 and the servers' CPU µs per request (from
# /proc: utime+stime of every edgequota process over the run).
#
# On two shared cores the 3-node figure cannot triple: the nodes, six redis-servers and
# the load generators share the same CPUs. Read it as "what the shared store costs".
#
# Run: bash benches/cluster.sh   Knobs: DURATION=10 CONNECTIONS=32 (per wrk) ORGS=1000
#      ROUTES="check consume record"  WAIT_REPLICAS=1  SKIP_BUILD=1
# Needs: redis-server, redis-cli, wrk, curl, python3.
set -euo pipefail
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
ORGS=${ORGS:-1000}
ROUTES=${ROUTES:-check consume record}
WAIT_REPLICAS=${WAIT_REPLICAS:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
build_binary

WORK=$(mktemp -d -t edgequota-cluster.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

echo "==> a Redis Cluster of six servers"
PORTS=()
while (( ${#PORTS[@]} < 6 )); do
    p=$(free_port)
    if (( p < 50000 )) && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p+10000))" 2>/dev/null; then
        PORTS+=("$p")
    fi
done
for p in "${PORTS[@]}"; do
    mkdir -p "$WORK/redis/$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-node-timeout 2000 \
        --appendonly yes --save "" --dir "$WORK/redis/$p" >/dev/null 2>&1 &
    PIDS+=("$!")
    disown
done
for p in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 1 --cluster-yes >/dev/null
for _ in $(seq 1 100); do
    up=$(for p in "${PORTS[@]}"; do redis-cli -p "$p" info replication; done | grep -c 'master_link_status:up' || true)
    (( up == 3 )) && break; sleep 0.2
done

SERVICE_TOKEN="bench-service-$RANDOM$RANDOM"
start_node() { # name → its base URL in $WORK/<name>.url
    local name=$1 port
    port=$(free_port)
    mkdir -p "$WORK/$name"
    env EDGEQUOTA__SERVER__BIND="127.0.0.1:$port" EDGEQUOTA__GRPC__BIND="" \
        EDGEQUOTA__STORE__BACKEND=redis EDGEQUOTA__STORE__REDIS_URLS="redis://127.0.0.1:${PORTS[0]}" \
        EDGEQUOTA__STORE__REDIS_WAIT_REPLICAS="$WAIT_REPLICAS" EDGEQUOTA__STORE__PATH="$WORK/$name" \
        EDGEQUOTA__AUTH__SERVICE_TOKENS="$SERVICE_TOKEN" EDGEQUOTA__AUTH__ADMIN_TOKENS="admin-$RANDOM$RANDOM" \
        EDGEQUOTA__TELEMETRY__LEVEL=warn "$BIN" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    disown
    echo "$!" >"$WORK/$name.pid"
    echo "http://127.0.0.1:$port" >"$WORK/$name.url"
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/api/diag/ping" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "node $name did not start"; cat "$WORK/$name.log"; exit 1
}
echo "==> three edgequota nodes"
for n in a b c; do start_node "$n"; done
A=$(cat "$WORK/a.url"); B=$(cat "$WORK/b.url"); C=$(cat "$WORK/c.url")

echo "==> $ORGS orgs"
python3 - "$A" "$SERVICE_TOKEN" "$ORGS" "$WORK/orgs.txt" <<'PY'
import http.client, json, sys, urllib.parse
base, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
h = {"authorization": f"Bearer {token}", "content-type": "application/json"}
ids = []
for i in range(n):
    c.request("POST", "/api/orgs.create", json.dumps({"name": f"o{i}", "ownerUserId": "u"}), h)
    r = c.getresponse(); d = r.read()
    if r.status != 200: sys.exit(f"{r.status} {d[:200]}")
    ids.append(json.loads(d)["orgId"])
open(out, "w").write("\n".join(ids) + "\n")
PY

cat >"$WORK/load.lua" <<'LUA'
local mode, token = os.getenv("MODE"), os.getenv("TOKEN")
local orgs, n, seq, prefix = {}, 0, 0, ""
function init(args)
  for line in io.lines(os.getenv("ORGS_FILE")) do if #line > 0 then orgs[#orgs + 1] = line end end
  n = #orgs
  math.randomseed(os.time() * 1000 + math.random(1, 1000000))
  prefix = string.format("c-%d-%d", os.time(), math.random(1, 1000000000))
end
function request()
  local org = orgs[math.random(n)]
  local h = { ["authorization"] = "Bearer " .. token, ["content-type"] = "application/json" }
  if mode == "record" then
    seq = seq + 1
    return wrk.format("POST", "/api/usage/record", h, '{"orgId":"' .. org .. '","metric":"api_call","value":1,"occurredAt":"'
      .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '","request_id":"' .. prefix .. "-" .. seq .. '"}')
  end
  return wrk.format("POST", "/api/quota/" .. mode, h, '{"orgId":"' .. org .. '","metric":"api_call"}')
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %.1f %.3f\n", summary.requests, latency:percentile(99), summary.duration / 1e6))
end
LUA

cpu_ticks() { # the edgequota nodes' utime+stime, in clock ticks
    local t=0 pid
    for n in a b c; do
        pid=$(cat "$WORK/$n.pid")
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
    done
    echo "$t"
}

run() { # shape route targets...
    local shape=$1 route=$2; shift 2
    local before after i=0
    for t in "$@"; do
        MODE=$route TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/load.lua" "$t" >/dev/null 2>&1 &
    done
    wait
    before=$(cpu_ticks)
    for t in "$@"; do
        i=$((i + 1))
        MODE=$route TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            -s "$WORK/load.lua" "$t" >"$WORK/$shape-$route-$i.out" 2>&1 &
    done
    wait
    after=$(cpu_ticks)
    python3 - "$shape" "$route" "$(( after - before ))" "$(getconf CLK_TCK)" "$WORK"/"$shape-$route"-*.out <<'PY'
import sys
shape, route, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
reqs, p99, dur = 0, 0.0, 0.0
for f in sys.argv[5:]:
    for line in open(f):
        if line.startswith("RESULT"):
            _, r, p, d = line.split()
            reqs += int(r); p99 = max(p99, float(p)); dur = max(dur, float(d))
cpu_us = ticks / hz * 1e6 / max(reqs, 1)
print(f"RESULT {shape} {route} {reqs / dur:.0f} {p99 / 1000:.2f} {cpu_us:.1f}")
PY
}

RESULTS=()
for route in $ROUTES; do
    echo "==> $route: 1 node" >&2
    RESULTS+=("$(run one "$route" "$A" "$A" "$A")")
    echo "==> $route: 3 nodes" >&2
    RESULTS+=("$(run three "$route" "$A" "$B" "$C")")
done
echo
echo "edgequota on a Redis Cluster (6 servers) — $(nproc) cores, 3 × wrk -t1 -c$CONNECTIONS, ${DURATION}s, $ORGS orgs, WAIT $WAIT_REPLICAS"
python3 - "${RESULTS[@]}" <<'PY'
import sys
rows = [l.split()[1:] for l in sys.argv[1:]]
print(f"{'route':10} {'nodes':>5} {'req/s':>9} {'p99':>9} {'server CPU/req':>15}")
by = {}
for shape, route, rps, p99, cpu in rows:
    by[(shape, route)] = float(rps)
    print(f"{route:10} {'1' if shape == 'one' else '3':>5} {float(rps):>9.0f} {p99:>7}ms {cpu:>12} µs")
for route in dict.fromkeys(r for _, r, *_ in rows):
    if ("one", route) in by and ("three", route) in by:
        print(f"{route}: 3 nodes / 1 node = {by[('three', route)] / by[('one', route)]:.2f}")
PY
