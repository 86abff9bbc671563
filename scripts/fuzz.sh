#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each one for a bounded time over its
# committed corpus (fuzz/corpus/<target>/); fails on any crash, timeout (10 s for one input)
# or memory over 2 GiB. New inputs go to a temporary directory, so the committed corpus is
# left as it is; a failing input is saved in fuzz/artifacts/<target>/.
# usage: scripts/fuzz.sh [SECONDS-PER-TARGET]   (default 15; needs cargo-fuzz)
#
# With a nightly toolchain the targets run under AddressSanitizer; a machine with only the
# stable toolchain (CI's) builds them without a sanitizer (`-s none`): libFuzzer still
# explores, and a panic, a timeout or runaway memory still fails the run.
#
# The targets are built unoptimised (`--dev`: debug assertions and overflow checks on), which
# builds in about a third of the time of an optimised build, and 15 s runs need no speed.
# RBUILD_FUZZ_RELEASE=1 builds optimised, with debug assertions, for long runs by hand.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-15}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 1
fi

# The longest input each target reads (larger seeds are cut there).
max_len() {
  case "$1" in
    layer_unpack) echo 65536 ;;
    oci_documents | parse_convert | passwd_group) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

profile=(--dev)
if [ "${RBUILD_FUZZ_RELEASE:-}" = 1 ]; then
  profile=(--release --debug-assertions)
fi
toolchain=()
# RBUILD_FUZZ_SANITIZER=none takes the stable path here too (as CI would).
if [ "${RBUILD_FUZZ_SANITIZER:-}" != none ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  profile+=(-s none)
  echo "fuzz: no nightly toolchain; building without a sanitizer" >&2
fi
export RUST_BACKTRACE=1
cargo "${toolchain[@]}" fuzz build "${profile[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
for target in $(cargo "${toolchain[@]}" fuzz list); do
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  if ! cargo "${toolchain[@]}" fuzz run "${profile[@]}" "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len="$(max_len "$target")" -print_final_stats=1 2>"$work/$target.log"; then
    tail -n 60 "$work/$target.log" >&2
    echo "fuzz: $target failed (the input is in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo '?')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
  summary+=("$(printf '%-20s %10s runs %8s/s  cov %s' "$target" "$runs" "$speed" "$cov")")
done
printf 'fuzz: %s\n' "${summary[@]}" >&2
