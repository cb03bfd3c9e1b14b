# benches/server.sh — sourced by load.sh and memory.sh: builds the release binary and
# starts it on a fresh temporary data directory and a free loopback port.
#
# After `start_server [NAME=VALUE ...]` (extra environment for the server):
#   BIN, WORK (temp dir, removed on exit), PORT, BASE, GRPC_PORT, SERVICE_TOKEN,
#   ADMIN_TOKEN, SERVER_PID; the server is stopped with SIGTERM when the script exits.
# After `start_ceiling`: CEILING_BASE, CEILING_PID (the bare app of benches/ceiling/);
# `build_ceiling` only builds it (CEILING_BIN).

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

build_binary() {
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    CEILING_BIN="$TARGET_DIR/release/edgequota-ceiling"
    # EDGEQUOTA_BIN=/path measures another build (e.g. an older commit's) on the same harness.
    if [[ -n "${EDGEQUOTA_BIN:-}" ]]; then
        BIN=$EDGEQUOTA_BIN
        return 0
    fi
    BIN="$TARGET_DIR/release/edgequota"
    if [[ -z "${SKIP_BUILD:-}" || ! -x "$BIN" ]]; then
        echo "==> cargo build --release"
        cargo build --release --quiet
    fi
}

build_ceiling() {
    # SKIP_BUILD keeps a ceiling binary only if it is newer than its sources.
    local stale=""
    if [[ ! -x "$CEILING_BIN" || "$ROOT/benches/ceiling/src/main.rs" -nt "$CEILING_BIN" ||
        "$ROOT/benches/ceiling/Cargo.toml" -nt "$CEILING_BIN" ]]; then
        stale=1
    fi
    if [[ -z "${SKIP_BUILD:-}" || -n "$stale" ]]; then
        echo "==> cargo build --release (benches/ceiling)"
        CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet \
            --manifest-path "$ROOT/benches/ceiling/Cargo.toml"
    fi
}

start_ceiling() {
    build_ceiling
    local port
    port=$(free_port)
    CEILING_BASE="http://127.0.0.1:$port"
    PORT=$port "$CEILING_BIN" >"$WORK/ceiling.log" 2>&1 &
    CEILING_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null -X POST -H 'authorization: Bearer x' -H 'content-type: application/json' \
            -d '{"orgId":"o"}' "$CEILING_BASE/api/quota/check" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the ceiling app did not answer in 10 s"; cat "$WORK/ceiling.log"; exit 1
}

stop_server() {
    if [[ -n "${CEILING_PID:-}" ]]; then
        kill -TERM "$CEILING_PID" 2>/dev/null || true
        wait "$CEILING_PID" 2>/dev/null || true
    fi
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
    PORT=$(free_port)
    GRPC_PORT=$(free_port)
    BASE="http://127.0.0.1:$PORT"
    ADMIN_TOKEN="bench-admin-$RANDOM$RANDOM"
    SERVICE_TOKEN="bench-service-$RANDOM$RANDOM"
    echo "==> starting $BIN on 127.0.0.1:$PORT (data in $WORK/data)"
    # An older build (EDGEQUOTA_BIN) may predate the gRPC front and refuse its setting.
    local grpc=(EDGEQUOTA__GRPC__BIND="127.0.0.1:$GRPC_PORT")
    [[ -n "${EDGEQUOTA_BIN:-}" && " ${ROUTES:-} " != *" rls "* ]] && grpc=()
    env EDGEQUOTA__SERVER__BIND="127.0.0.1:$PORT" \
        "${grpc[@]}" \
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
