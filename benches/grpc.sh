#!/usr/bin/env bash
# benches/grpc.sh — the Envoy rate limit service (gRPC ShouldRateLimit, one descriptor,
# a random org of 10,000 per call, 64 calls in flight over 4 HTTP/2 connections) next
# to the HTTP consume route, same server, same run. Target: >= 40,000 decisions/s.
#
# Run: bash benches/grpc.sh   (knobs as benches/load.sh: DURATION, CONNECTIONS, ...)
set -euo pipefail
ROUTES="${ROUTES:-consume rls}" exec bash "$(dirname "${BASH_SOURCE[0]}")/load.sh"
