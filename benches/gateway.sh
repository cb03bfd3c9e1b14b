#!/usr/bin/env bash
# benches/gateway.sh — what quotas cost a gateway operator: requests/s through nginx with
# `auth_request` to edgequota (the shipped config/gateways/nginx.conf, templated only for
# ports and paths) against the same nginx proxying straight to the same upstream, in the
# same run. The upstream is a second nginx server block answering a constant, so both
# paths differ only by the auth subrequest. One org key per request, from KEYS orgs.
#
# Run: bash benches/gateway.sh   Knobs: DURATION=15 CONNECTIONS=64 WRK_THREADS=2 KEYS=200
# Needs: nginx, wrk, curl, python3.
set -euo pipefail
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
KEYS=${KEYS:-200}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=benches/server.sh
source "$ROOT/benches/server.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || { echo "nginx is not installed (apt-get install nginx)"; exit 1; }
build_binary
# A plan large enough that nothing is denied during the run.
PLANS=$(mktemp -t edgequota-plans.XXXXXX.toml)
printf '[plans.plan_free]\nstripe_lookup_key = "plan_free"\nstigg_plan_id = "free"\nrank = 0\ntrial_days = 0\nincluded = { api_call = 1000000000 }\n' >"$PLANS"
start_server EDGEQUOTA__PLANS__FILE="$PLANS"

echo "==> $KEYS orgs with one key each"
python3 - "$BASE" "$SERVICE_TOKEN" "$KEYS" "$WORK/keys.txt" <<'PY'
import http.client, json, sys, urllib.parse
base, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
h = {"authorization": f"Bearer {token}", "content-type": "application/json"}
def call(path, body):
    conn.request("POST", path, json.dumps(body), h)
    r = conn.getresponse(); data = r.read()
    if r.status != 200: sys.exit(f"{path}: {r.status} {data[:200]}")
    return json.loads(data)
keys = []
for i in range(n):
    org = call("/api/orgs.create", {"name": f"gw {i}", "ownerUserId": f"u{i}"})["orgId"]
    keys.append(call("/api/orgs/api-keys.create", {"orgId": org})["apiKey"])
open(out, "w").write("\n".join(keys) + "\n")
PY

GW_PORT=$(free_port); DIRECT_PORT=$(free_port); UP_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
python3 - "$ROOT/config/gateways/nginx.conf" "$WORK/nginx/nginx.conf" "$PORT" "$UP_PORT" "$GW_PORT" "$DIRECT_PORT" <<'PY'
import sys
src, dst, eq, up, gw, direct = sys.argv[1:]
conf = open(src).read()
for old, new in [("127.0.0.1:8080", f"127.0.0.1:{eq}"), ("127.0.0.1:8000", f"127.0.0.1:{up}"),
                 ("listen 127.0.0.1:8088;", f"listen 127.0.0.1:{gw};"),
                 ("access_log logs/access.log;", "access_log off;")]:
    assert old in conf, old
    conf = conf.replace(old, new)
extra = f"""
    server {{
        listen 127.0.0.1:{up};
        location / {{ return 200 "upstream\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{direct};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://api;
        }}
    }}
"""
i = conf.rindex("}")
open(dst, "w").write(conf[:i] + extra + conf[i:])
PY
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g "daemon off; master_process off;" \
    >"$WORK/nginx.log" 2>&1 &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null || true; rm -f "$PLANS"; stop_server' EXIT
for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$DIRECT_PORT/" && break; sleep 0.1; done

cat >"$WORK/gw.lua" <<'LUA'
local keys, n = {}, 0
non200 = 0
function init(args)
  for line in io.lines(os.getenv("KEYS_FILE")) do
    if #line > 0 then keys[#keys + 1] = line end
  end
  n = #keys
  math.randomseed(os.time())
end
function request()
  return wrk.format("GET", "/v1/call", { ["x-api-key"] = keys[math.random(n)] })
end
function response(status, hdrs, body)
  if status ~= 200 then non200 = non200 + 1 end
end
LUA
run() { # name port
    KEYS_FILE="$WORK/keys.txt" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d3s -s "$WORK/gw.lua" "http://127.0.0.1:$2/" >/dev/null 2>&1
    echo "==> $1: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s" >&2
    KEYS_FILE="$WORK/keys.txt" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -s "$WORK/gw.lua" "http://127.0.0.1:$2/" >"$WORK/$1.out"
    python3 - "$1" "$WORK/$1.out" <<'PY'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", text)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"RESULT {name} {rps:.0f} {ms(50):.2f} {ms(99):.2f} {bad.group(1) if bad else 0}")
PY
}
R1=$(run direct "$DIRECT_PORT")
R2=$(run auth_request "$GW_PORT")
echo
echo "nginx in front of a constant upstream — $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s each"
python3 - "$R1" "$R2" <<'PY'
import sys
rows = [l.split() for l in sys.argv[1:]]
print(f"{'path':34} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-200':>8}")
for _, name, rps, p50, p99, bad in rows:
    label = {"direct": "nginx → upstream", "auth_request": "nginx → edgequota authorize → upstream"}[name]
    print(f"{label:34} {float(rps):>9.0f} {p50:>7}ms {p99:>7}ms {bad:>8}")
print(f"auth_request / direct = {float(rows[1][2]) / float(rows[0][2]):.2f}")
PY
