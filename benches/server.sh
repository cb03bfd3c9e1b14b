# benches/server.sh — sourced by load.sh and memory.sh: builds the release binary and
# starts it on a fresh temporary data directory and a free loopback port.
#
# After `start_server [NAME=VALUE ...]` (extra environment for the server):
#   BIN, WORK (temp dir, removed on exit), PORT, BASE, SERVICE_TOKEN, ADMIN_TOKEN,
#   SERVER_PID; the server is stopped with SIGTERM when the script exits.

build_binary() {
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BIN="$target_dir/release/edgequota"
    if [[ -z "${SKIP_BUILD:-}" || ! -x "$BIN" ]]; then
        echo "==> cargo build --release"
        cargo build --release --quiet
    fi
}

stop_server() {
    if [[ -n "${SERVER_PID:-}" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}

start_server() {
    WORK=$(mktemp -d -t edgequota-bench.XXXXXX)
    SERVER_PID=""
    trap stop_server EXIT
    trap 'exit 130' INT TERM
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$PORT"
    ADMIN_TOKEN="bench-admin-$RANDOM$RANDOM"
    SERVICE_TOKEN="bench-service-$RANDOM$RANDOM"
    echo "==> starting $BIN on 127.0.0.1:$PORT (data in $WORK/data)"
    env EDGEQUOTA__SERVER__BIND="127.0.0.1:$PORT" \
        EDGEQUOTA__STORE__PATH="$WORK/data" \
        EDGEQUOTA__AUTH__ADMIN_TOKENS="$ADMIN_TOKEN" \
        EDGEQUOTA__AUTH__SERVICE_TOKENS="$SERVICE_TOKEN" \
        EDGEQUOTA__TELEMETRY__LEVEL=warn \
        "$@" "$BIN" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS "$BASE/api/diag/ping" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited:"; cat "$WORK/server.log"; exit 1; }
        sleep 0.1
    done
    echo "server did not answer in 10 s"; exit 1
}
