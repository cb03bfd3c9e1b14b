#!/usr/bin/env bash
# benches/durability.sh — what the fdatasync after every group commit costs: the durable
# record route measured twice in one run on the same machine, first with
# store.fdatasync=false (sled's own flush only: acknowledged records can be lost on power
# loss), then with the default store.fdatasync=true. Each pass is benches/load.sh with
# ROUTES=record on a fresh server and data directory.
#
# Run: bash benches/durability.sh   (knobs as load.sh: DURATION, CONNECTIONS, ORGS, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# EDGEQUOTA_BIN=/path measures that binary (see load.sh) instead of building this tree.
[[ -n "${EDGEQUOTA_BIN:-}" ]] || cargo build --release --quiet
for sync in false true; do
    echo "==== store.fdatasync = $sync"
    EDGEQUOTA__STORE__FDATASYNC=$sync ROUTES=record SKIP_BUILD=1 bash benches/load.sh |
        grep -E 'usage/record|durable record'
done
