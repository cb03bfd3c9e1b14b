#!/usr/bin/env bash
# benches/instructions.sh — instructions per request, counted by valgrind's callgrind,
# for the service and for the bare app of benches/ceiling/ on the same requests.
#
# Why: on this VM wrk's req/s ratios swing by a third from run to run (other tenants,
# no PMU for perf counters), so a 5% change on the hot path cannot be seen with them.
# Callgrind counts the instructions every thread of the server executes while the load
# runs; divided by the requests wrk completed, that is a figure that repeats to within
# ~1% and can be compared build against build (EDGEQUOTA_BIN=…). It weighs every
# instruction alike: memset and SHA-256 (SHA-NI natively) count for more here than
# they cost in time, cache misses and syscalls for less — read it next to load.sh.
#
# Run:   bash benches/instructions.sh
# Knobs: ROUTES="ceiling check consume" (also authorize; batch: 100 events of random
#        orgs per request, so its figure is per batch)  DURATION=10  CONNECTIONS=4
#        ORGS=50  SKIP_BUILD=1  EDGEQUOTA_BIN=/path  KEEP=/dir (keep the callgrind
#        files, for callgrind_annotate --inclusive=yes FILE)
# Needs: valgrind (callgrind_control), wrk, curl, python3.
set -euo pipefail

ROUTES=${ROUTES:-ceiling check consume}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-4}
ORGS=${ORGS:-50}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
build_binary
for tool in valgrind callgrind_control wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind wrk)"; exit 1; }
done

WORK=$(mktemp -d -t edgequota-instr.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP" && cp "$WORK"/*.out* "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts "$@" (NAME=VALUE... then the program) under callgrind, instrumentation off until
# the load starts. The variables go to `env` outside valgrind: valgrind does not follow
# an exec, so a program started through `env` under it would run uncounted.
under_callgrind() {
    local name=$1; shift
    local vars=()
    while [[ $1 == *=* ]]; do vars+=("$1"); shift; done
    env "${vars[@]}" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/$name.out" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
}

wait_for() {
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no answer from $* in 60 s"; exit 1
}

TOKEN="instr-service-$RANDOM"
PORT=$(free_port)
under_callgrind service EDGEQUOTA__SERVER__BIND="127.0.0.1:$PORT" EDGEQUOTA__GRPC__BIND="" \
    EDGEQUOTA__STORE__PATH="$WORK/data" EDGEQUOTA__AUTH__ADMIN_TOKENS="instr-admin" \
    EDGEQUOTA__AUTH__SERVICE_TOKENS="$TOKEN" EDGEQUOTA__TELEMETRY__LEVEL=warn "$BIN"
SERVICE_PID=$LAST_PID
wait_for "http://127.0.0.1:$PORT/api/diag/ping"

CEILING_PORT=""
if [[ " $ROUTES " == *" ceiling "* ]]; then
    build_ceiling
    CEILING_PORT=$(free_port)
    under_callgrind ceiling PORT="$CEILING_PORT" "$CEILING_BIN"
    CEILING_PID=$LAST_PID
    wait_for -X POST -H 'authorization: Bearer x' -H 'content-type: application/json' -d '{"orgId":"o"}' \
        "http://127.0.0.1:$CEILING_PORT/api/quota/check"
fi

python3 - "$PORT" "$TOKEN" "$ORGS" "$WORK/orgs.txt" "$WORK/keys.txt" <<'PY'
import http.client, json, sys
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
def call(path, body):
    conn.request("POST", path, json.dumps(body), headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit(f"{path}: {resp.status} {data[:200]!r}")
    return json.loads(data)
orgs = [call("/api/orgs.create", {"name": f"org {i}", "ownerUserId": f"u{i}"})["orgId"] for i in range(n)]
keys = [call("/api/orgs/api-keys.create", {"orgId": o})["apiKey"] for o in orgs]
open(sys.argv[4], "w").write("\n".join(orgs) + "\n")
open(sys.argv[5], "w").write("\n".join(keys) + "\n")
PY

cat >"$WORK/load.lua" <<'LUA'
local route = os.getenv("ROUTE")
local orgs, keys, seq, prefix = {}, {}, 0, ""
function init(args)
  math.randomseed(os.time())
  prefix = string.format("instr-%d-%d", os.time(), math.random(1, 1000000000))
  for l in io.lines(os.getenv("ORGS_FILE")) do if #l > 0 then orgs[#orgs + 1] = l end end
  for l in io.lines(os.getenv("KEYS_FILE")) do if #l > 0 then keys[#keys + 1] = l end end
end
function request()
  if route == "authorize" then
    return wrk.format("GET", "/api/quota/authorize", { ["x-api-key"] = keys[math.random(#keys)] })
  end
  if route == "batch" then -- 100 events, each a random org, unique request ids
    local at, events = os.date("!%Y-%m-%dT%H:%M:%SZ"), {}
    for i = 1, 100 do
      seq = seq + 1
      events[i] = '{"orgId":"' .. orgs[math.random(#orgs)] .. '","metric":"api_call","value":1,"occurredAt":"'
        .. at .. '","request_id":"' .. prefix .. "-" .. seq .. '"}'
    end
    return wrk.format("POST", "/api/usage/record.batch",
      { ["authorization"] = "Bearer " .. os.getenv("TOKEN"), ["content-type"] = "application/json" },
      '{"events":[' .. table.concat(events, ",") .. ']}')
  end
  local path = route == "consume" and "/api/quota/consume" or "/api/quota/check"
  return wrk.format("POST", path,
    { ["authorization"] = "Bearer " .. os.getenv("TOKEN"), ["content-type"] = "application/json" },
    '{"orgId":"' .. orgs[math.random(#orgs)] .. '","metric":"api_call"}')
end
function done(summary, latency, requests)
  io.write(string.format("REQUESTS %d\n", summary.requests))
end
LUA

# Counts one route: instructions executed by every thread of PID while wrk runs.
measure() {
    local route=$1 pid=$2 port=$3 name=$4 label=$5
    # Unmeasured warm-up: every org's actor live, every lazy table built.
    ROUTE=$route ORGS_FILE="$WORK/orgs.txt" KEYS_FILE="$WORK/keys.txt" TOKEN=$TOKEN \
        wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/load.lua" "http://127.0.0.1:$port" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    local out
    out=$(ROUTE=$route ORGS_FILE="$WORK/orgs.txt" KEYS_FILE="$WORK/keys.txt" TOKEN=$TOKEN \
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/load.lua" "http://127.0.0.1:$port")
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$label" "$pid" >/dev/null 2>&1
    local requests file instr
    requests=$(sed -n 's/^REQUESTS //p' <<<"$out")
    file=$(ls -t "$WORK/$name.out"* | head -1)
    instr=$(sed -n 's/^totals: //p' "$file" | awk '{print $1}')
    printf '%-10s %9d requests  %12d instructions  %8.0f per request\n' \
        "$label" "$requests" "$instr" "$(python3 -c "print($instr / max($requests, 1))")"
    echo "$label $(python3 -c "print($instr / max($requests, 1))")" >>"$WORK/per_request.txt"
}

echo "==> instructions per request (wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ORGS orgs)"
for route in $ROUTES; do
    if [[ $route == ceiling ]]; then
        measure check "$CEILING_PID" "$CEILING_PORT" ceiling ceiling
    else
        measure "$route" "$SERVICE_PID" "$PORT" service "$route"
    fi
done
python3 - "$WORK/per_request.txt" <<'PY'
import sys
cost = dict((l.split()[0], float(l.split()[1])) for l in open(sys.argv[1]))
if "ceiling" in cost:
    for route in ("check", "consume", "authorize"):
        if route in cost:
            print(f"{route}/ceiling by instructions: {cost['ceiling'] / cost[route]:.2f}")
PY
