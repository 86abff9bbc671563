#!/usr/bin/env bash
# The store's crash loop, longer than CI's 50 rounds: SIGKILLs `rbuild load` and
# `rbuild build` at random moments and checks `rbuild store verify` after every round.
# usage: scripts/crash-loop.sh [ROUNDS]   (default 500; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
export RBUILD_CRASH_ROUNDS="${1:-500}"
export RBUILD_PRIVILEGED_TESTS=1
exec cargo nextest run -p rbuild --no-capture killed_at_random_moments_the_store_stays_consistent
