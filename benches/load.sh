#!/usr/bin/env bash
# benches/load.sh — HTTP load test of edgequota (issue 2, "Performance").
#
# What it measures: the release binary, started on a fresh temporary data directory,
# with 10,000 seeded orgs, and beside it the bare actix-web app of benches/ceiling/,
# driven by `wrk` with the same threads, connections and duration for each route, one
# after the other in the same run:
#
#   ceiling  POST /api/quota/check   on the bare app: parses the same JSON, answers a
#                                    constant — the honest ceiling of an actix-web front
#   check    POST /api/quota/check   a random org per request (answered from memory)
#   consume  POST /api/quota/consume a random org per request (decide and count in memory;
#                                    persisted write-behind)
#   record   POST /api/usage/record  a random org and a unique request_id per request
#                                    (answered only once durable: group commit + fsync)
#   authorize GET /api/quota/authorize  forward auth with a random org's key in X-Api-Key
#                                    (one key each for the first KEYS orgs)
#   batch    POST /api/usage/record.batch  BATCH events per request, random orgs, unique
#                                    request_ids (durable before the 200)
#
# For each it prints requests/s, latency p50/p99 and the count of non-200 answers and
# socket errors, then the ratios. Targets: check and consume ≥ 0.8 × ceiling, consume
# ≥ 0.9 × check, authorize ≥ 0.8 × check, record ≥ 20,000 req/s, batch ≥ 150,000
# events/s.
#
# Run (from anywhere):  bash benches/load.sh
# Also: `rls` (the Envoy rate limit service over gRPC, by benches/rls_load.rs with
# CONNECTIONS calls in flight) — benches/grpc.sh runs it next to consume.
# Knobs (environment):  DURATION=15 (seconds per route)  CONNECTIONS=64  WRK_THREADS=2
#                       ORGS=10000  WARMUP=3 (seconds of unmeasured load before each route)
#                       SKIP_BUILD=1 (use the existing release binary)
#                       EDGEQUOTA_BIN=/path (measure that binary instead, e.g. an older
#                       commit's build, with the same harness; the ceiling is still built here)
#                       PROFILE=check (perf record -g the server during that route's
#                       measured run; prints CPU by thread and the top symbols;
#                       PERF_KEEP=/path keeps the perf.data; PERF_GRAPH="--call-graph
#                       dwarf,16384 -F 499" for call chains through code without frame pointers)
#                       ROUTES="ceiling check consume record" (which, in this order;
#                       also authorize, batch, rls)  BATCH=100
#                       KEYS=$ORGS (orgs given a key; with only 1,000 the free plan's 1,000
#                       calls each ran out within seconds and authorize measured denials)
#                       BATCH_ORGS=0 (each batch event a random org; N > 0: a batch's
#                       events spread over N random orgs, as a backend batching per tenant)
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
ROUTES=${ROUTES:-ceiling check consume record}
KEYS=${KEYS:-$ORGS}
BATCH=${BATCH:-100}
BATCH_ORGS=${BATCH_ORGS:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# --- build ---------------------------------------------------------------------------
# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
build_binary
if [[ " $ROUTES " == *" rls "* ]]; then
    echo "==> cargo bench --no-run --bench rls_load"
    cargo bench --quiet --no-run --bench rls_load 2>/dev/null
fi

# --- wrk -----------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    echo "==> installing wrk"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk >/dev/null
fi

# --- start the server and the ceiling app --------------------------------------------
start_server
start_ceiling

# --- seed orgs -----------------------------------------------------------------------
echo "==> seeding $ORGS orgs"
started=$(date +%s.%N)
python3 - "$BASE" "$SERVICE_TOKEN" "$ORGS" "$WORK/orgs.txt" "$KEYS" "$WORK/keys.txt" <<'PY'
import http.client, json, sys, threading, urllib.parse
base, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
nkeys, keys_out = int(sys.argv[5]), sys.argv[6]
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
keys = []
def mint(orgs):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    for org in orgs:
        conn.request("POST", "/api/orgs/api-keys.create", json.dumps({"orgId": org}), headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            failures.append((resp.status, data[:200]))
            continue
        with lock:
            keys.append(json.loads(data)["apiKey"])
chosen = ids[:nkeys]
threads = [threading.Thread(target=mint, args=(chosen[t::16],)) for t in range(16)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} key mints failed, e.g. {failures[0]}")
with open(keys_out, "w") as f:
    f.write("\n".join(keys) + "\n")
PY
echo "    $(wc -l <"$WORK/orgs.txt") orgs in $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s"

# --- the wrk script (one for all three routes, so their client-side cost is equal) ----
cat >"$WORK/load.lua" <<'LUA'
-- MODE = ceiling | check | consume | record; ORGS_FILE = one org id a line; TOKEN = service token
local mode = os.getenv("MODE")
local token = os.getenv("TOKEN")
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local orgs, n, keys, nkeys, seq, prefix, headers
local batch = tonumber(os.getenv("BATCH") or "100")
local batch_orgs = tonumber(os.getenv("BATCH_ORGS") or "0")
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
  keys = {}
  for line in io.lines(os.getenv("KEYS_FILE")) do
    if #line > 0 then keys[#keys + 1] = line end
  end
  nkeys = #keys
  headers = { ["authorization"] = "Bearer " .. token,
              ["content-type"] = "application/json" }
end

function request()
  local org = orgs[math.random(n)]
  if mode == "ceiling" or mode == "check" then
    return wrk.format("POST", "/api/quota/check", headers,
      '{"orgId":"' .. org .. '","metric":"api_call"}')
  end
  if mode == "consume" then
    return wrk.format("POST", "/api/quota/consume", headers,
      '{"orgId":"' .. org .. '","metric":"api_call"}')
  end
  if mode == "authorize" then
    return wrk.format("GET", "/api/quota/authorize", { ["x-api-key"] = keys[math.random(nkeys)] })
  end
  if mode == "batch" then
    local at = os.date("!%Y-%m-%dT%H:%M:%SZ")
    local events = {}
    local picked = {}
    for i = 1, batch_orgs do picked[i] = orgs[math.random(n)] end
    for i = 1, batch do
      seq = seq + 1
      local event_org = batch_orgs > 0 and picked[(i - 1) % batch_orgs + 1] or orgs[math.random(n)]
      events[i] = '{"orgId":"' .. event_org .. '","metric":"api_call","value":1,"occurredAt":"'
        .. at .. '","request_id":"' .. prefix .. "-" .. seq .. '"}'
    end
    return wrk.format("POST", "/api/usage/record.batch", headers,
      '{"events":[' .. table.concat(events, ",") .. ']}')
  end
  seq = seq + 1
  return wrk.format("POST", "/api/usage/record", headers,
    '{"orgId":"' .. org .. '","metric":"api_call","value":1,"occurredAt":"'
    .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '","request_id":"' .. prefix .. "-" .. seq .. '"}')
end

function response(status, hdrs, body)
  -- A batch is 200 even when events fail: look inside for a failed one.
  if status ~= 200 or (mode == "batch" and string.find(body, '"status":[45]')) then
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

run_rls() { # the gRPC rate limit service, by the tonic client of benches/rls_load.rs
    local secs=$1
    ADDR="127.0.0.1:$GRPC_PORT" TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" \
        DURATION=$secs CONCURRENCY=$CONNECTIONS CLIENT_THREADS=$WRK_THREADS \
        cargo bench --quiet --bench rls_load 2>"$WORK/rls.err"
}

run() { # run MODE: a warm-up, then the measured run; prints wrk's RESULT line
    local mode=$1 target=$BASE
    if [[ "$mode" == rls ]]; then
        [[ "$WARMUP" -gt 0 ]] && run_rls "$WARMUP" >/dev/null
        echo "==> rls: $CONNECTIONS calls in flight, ${DURATION}s" >&2
        local t0 result
        t0=$(cpu_ticks "$SERVER_PID")
        perf_start rls
        result=$(run_rls "$DURATION" | grep '^RESULT') || { cat "$WORK/rls.err" >&2; exit 1; }
        perf_report rls
        echo "$result $(( $(cpu_ticks "$SERVER_PID") - t0 ))"
        return
    fi
    [[ "$mode" == ceiling ]] && target=$CEILING_BASE
    if [[ "$WARMUP" -gt 0 ]]; then
        MODE=$mode TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" KEYS_FILE="$WORK/keys.txt" BATCH=$BATCH BATCH_ORGS=$BATCH_ORGS \
            wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/load.lua" "$target" \
            >/dev/null 2>&1
    fi
    echo "==> $mode: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s" >&2
    local commits_before loaded=$SERVER_PID ticks_before threads_before
    [[ "$mode" == ceiling ]] && loaded=$CEILING_PID
    commits_before=$(commit_stats)
    ticks_before=$(cpu_ticks "$loaded")
    threads_before=$(thread_ticks "$loaded")
    perf_start "$mode"
    MODE=$mode TOKEN=$SERVICE_TOKEN ORGS_FILE="$WORK/orgs.txt" KEYS_FILE="$WORK/keys.txt" BATCH=$BATCH BATCH_ORGS=$BATCH_ORGS \
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/load.lua" "$target" \
        >"$WORK/$mode.out" 2>"$WORK/$mode.err" || { cat "$WORK/$mode.err" >&2; exit 1; }
    if [[ -s "$WORK/$mode.err" ]]; then sed 's/^/    /' "$WORK/$mode.err" >&2; fi
    perf_report "$mode"
    thread_report "$threads_before" "$(thread_ticks "$loaded")" \
        "$(awk '/^RESULT/ {print $8}' "$WORK/$mode.out")"
    if [[ "$mode" != ceiling ]]; then
        python3 - "$commits_before" "$(commit_stats)" <<'PY' >&2
import sys
(c0, s0, d0, k0, t0), (c1, s1, d1, k1, t1) = (map(float, a.split()) for a in sys.argv[1:3])
n, k = c1 - c0, k1 - k0
if n > 0:
    print(f"    group commits: {n:.0f}, {(s1 - s0) / n:.1f} writes each, {(d1 - d0) / n * 1e3:.2f} ms each")
if k > 0:
    print(f"    checkpoints: {k:.0f}, {(t1 - t0) / k * 1e3:.1f} ms each")
PY
    fi
    echo "$(grep '^RESULT' "$WORK/$mode.out") $(( $(cpu_ticks "$loaded") - ticks_before ))"
}

PERF_PID=""
perf_start() { # perf_start MODE: when PROFILE=MODE, records the loaded app for DURATION (PERF_PID)
    PERF_PID=""
    if [[ "${PROFILE:-}" == "$1" ]]; then
        local pid=$SERVER_PID
        [[ "$1" == ceiling ]] && pid=$CEILING_PID
        # shellcheck disable=SC2086 # PERF_GRAPH is a list of perf options
        perf record -q ${PERF_GRAPH:--g} -o "$WORK/perf.data" -p "$pid" -- sleep "$DURATION" \
            >/dev/null 2>&1 &
        PERF_PID=$!
    fi
}

perf_report() { # perf_report MODE: waits for perf_start's recording and summarises it
    [[ -n "$PERF_PID" ]] || return 0
    wait "$PERF_PID" || true
    {
        echo "==> perf: CPU by thread during $1"
        # By thread (pid is the thread id here): every actix thread's name truncates to "actix-rt|system".
        perf report -i "$WORK/perf.data" --no-children --sort pid -g none --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -12
        echo "==> perf: top symbols"
        perf report -i "$WORK/perf.data" --no-children --sort sym --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | head -25
        if [[ -n "${PERF_KEEP:-}" ]]; then cp "$WORK/perf.data" "$PERF_KEEP"; fi
    } >&2
}

thread_ticks() { # "TID NAME TICKS" for each thread of process $1
    local t
    for t in /proc/"$1"/task/*; do
        echo "${t##*/} $(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done 2>/dev/null
}

thread_report() { # thread_report BEFORE AFTER REQUESTS: server CPU per request by thread name
    python3 - "$1" "$2" "$3" "$(getconf CLK_TCK)" <<'PY' >&2
import sys
def read(text):
    # A thread that ended while it was read leaves a short line: skip it.
    rows = (l.split() for l in text.splitlines())
    return {r[0]: (r[1], int(r[2])) for r in rows if len(r) == 3 and r[2].isdigit()}
a, b, n, hz = read(sys.argv[1]), read(sys.argv[2]), max(int(sys.argv[3]), 1), int(sys.argv[4])
by = {}
for tid, (name, t) in b.items():
    by[name] = by.get(name, 0) + t - a.get(tid, (name, 0))[1]
parts = [f"{name} {t * 1e6 / hz / n:.1f}" for name, t in sorted(by.items(), key=lambda x: -x[1]) if t > 0]
print("    CPU/req by thread (us): " + ", ".join(parts))
PY
}

cpu_ticks() { # CPU time (user + system, in clock ticks) process $1 has used so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

commit_stats() { # the server's group commits (count, writes, seconds) and checkpoints (count, seconds) so far
    curl -s "$BASE/metrics" | awk '
        /^edgequota_store_commit_batch_size_count/ {c=$2}
        /^edgequota_store_commit_batch_size_sum/ {s=$2}
        /^edgequota_store_commit_duration_seconds_sum/ {d=$2}
        /^edgequota_store_checkpoint_duration_seconds_count/ {k=$2}
        /^edgequota_store_checkpoint_duration_seconds_sum/ {t=$2}
        END {printf "%s %s %s %s %s\n", c+0, s+0, d+0, k+0, t+0}'
}

RESULTS=()
for route in $ROUTES; do
    RESULTS+=("$(run "$route")")
done
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")

# --- report --------------------------------------------------------------------------
echo
echo "edgequota load test — $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s per route, $ORGS orgs"
python3 - "$RSS_KB" "$BATCH" "$(getconf CLK_TCK)" "${RESULTS[@]}" <<'PY'
import sys
batch, hz = int(sys.argv[2]), int(sys.argv[3])
rows = {}
for line in sys.argv[4:]:
    _, mode, rps, p50, p99, bad, errs, total, ticks = line.split()
    rows[mode] = dict(rps=float(rps), p50=float(p50), p99=float(p99),
                      bad=int(bad), errs=int(errs), total=int(total),
                      cpu_us=int(ticks) * 1e6 / hz / max(int(total), 1))
names = {"ceiling": "POST /api/quota/check (bare app)",
         "check": "POST /api/quota/check",
         "consume": "POST /api/quota/consume",
         "rls": "gRPC RateLimitService (RLS)",
         "record": "POST /api/usage/record",
         "authorize": "GET /api/quota/authorize",
         "batch": f"POST /api/usage/record.batch x{batch}"}
print(f"{'route':34} {'req/s':>10} {'p50':>10} {'p99':>10} {'non-200':>8} {'sock err':>8} {'CPU/req':>9}")
for mode in rows:
    r = rows[mode]
    print(f"{names[mode]:34} {r['rps']:>10.0f} {r['p50']/1e3:>8.2f}ms {r['p99']/1e3:>8.2f}ms"
          f" {r['bad']:>8} {r['errs']:>8} {r['cpu_us']:>7.1f}us")
print()
def ratio(a, b, target):
    if a in rows and b in rows:
        r = rows[a]["rps"] / rows[b]["rps"]
        c = rows[b]["cpu_us"] / max(rows[a]["cpu_us"], 1e-9)
        print(f"{a} / {b} = {r:.2f}   (target >= {target:.2f}: {'met' if r >= target else 'NOT MET'})"
              f"   by server CPU per request: {c:.2f}")
ratio("check", "ceiling", 0.8)
ratio("consume", "ceiling", 0.8)
ratio("consume", "check", 0.9)
ratio("authorize", "check", 0.8)
if "rls" in rows:
    rls = rows["rls"]["rps"]
    print(f"rls decisions/s = {rls:.0f}   (target >= 40000: {'met' if rls >= 40000 else 'NOT MET'})")
if "record" in rows:
    rec = rows["record"]["rps"]
    print(f"durable record  = {rec:.0f} req/s   (target >= 20000: {'met' if rec >= 20000 else 'NOT MET'})")
if "batch" in rows:
    ev = rows["batch"]["rps"] * batch
    print(f"batch events/s  = {ev:.0f}   (target >= 150000: {'met' if ev >= 150000 else 'NOT MET'})")
print(f"server RSS after the run: {int(sys.argv[1]) / 1024:.0f} MB")
PY
