#!/usr/bin/env bash
# Parse + convert benchmark of the frontend: a generated 10,000-instruction Dockerfile.
# Prints the median thread CPU time over the runs (and wall times). Extra arguments go to
# the benchmark: --instructions N, --runs N, --heavy (see frontend/examples/parse_bench.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --quiet --release -p rbuild-frontend --example parse_bench -- "$@"
