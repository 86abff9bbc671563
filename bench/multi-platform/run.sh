#!/bin/bash
# rbuild's multi-platform builds: a two-platform build (linux/amd64 + linux/arm64) against
# building each platform alone, for three Dockerfiles: `emulated`, whose RUN runs on the
# target (arm64 through QEMU); `cross`, which compiles for each target on the build platform
# (the step reads TARGETARCH: one per platform, both native) and copies the result into the
# target's image; `shared`, whose build-platform step reads no TARGET* (the same step for
# every platform).
#
# usage: bench/multi-platform/run.sh [-n ROUNDS] [RBUILD]
#   RBUILD: the binary to measure (default: target/release/rbuild; build it with
#   `cargo build --release`).
# Needs: root, Debian's busybox-static for amd64 and arm64 (scripts/test.sh downloads the
# arm64 package to /var/cache/rbuild-tests) and qemu-user-static's aarch64 handler
# registered with the F flag (scripts/test.sh registers it).
# Every build is cold (`--no-cache`); wall clock; the median of the rounds is printed.
set -euo pipefail
ROUNDS=3
while getopts "n:" o; do
  case $o in n) ROUNDS=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RBUILD=${1:-$ROOT/target/release/rbuild}
WORK=$(mktemp -d /tmp/rbuild-bench-mp.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export RBUILD_ROOT=$WORK/store

# Base images: busybox-static for each architecture, one per name.
for arch in amd64 arm64; do
  dir=$WORK/rootfs-$arch
  mkdir -p "$dir"
  if [ $arch = amd64 ]; then
    mkdir -p "$dir/bin" && cp /bin/busybox "$dir/bin/busybox"
  else
    dpkg-deb -x /var/cache/rbuild-tests/busybox-static_arm64.deb "$dir"
  fi
  for applet in sh echo cat mkdir; do ln -sf busybox "$dir/bin/$applet"; done
  tar -C "$dir" -cf "$WORK/$arch.tar" bin
  "$RBUILD" import --platform linux/$arch "$WORK/$arch.tar" bench-busybox:$arch >/dev/null
done

# The same work in both cases: a shell loop of 300,000 iterations (a stand-in for a
# compiler: CPU-bound, many instructions, few system calls).
LOOP='i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'
mkdir -p "$WORK/emulated" "$WORK/cross" "$WORK/shared"
cat > "$WORK/emulated/Dockerfile" <<DOCKERFILE
ARG TARGETARCH
FROM bench-busybox:\$TARGETARCH
RUN $LOOP; echo \$i > /out
DOCKERFILE
cat > "$WORK/cross/Dockerfile" <<DOCKERFILE
ARG TARGETARCH
FROM --platform=\$BUILDPLATFORM bench-busybox:amd64 AS build
ARG TARGETARCH
RUN $LOOP; echo "\$i for \$TARGETARCH" > /out
FROM bench-busybox:\$TARGETARCH
COPY --from=build /out /out
DOCKERFILE

# A build-platform step that reads no TARGET* (fetching dependencies, generating code):
# the same step for every platform.
cat > "$WORK/shared/Dockerfile" <<DOCKERFILE
ARG TARGETARCH
FROM --platform=\$BUILDPLATFORM bench-busybox:amd64 AS build
RUN $LOOP; echo "\$i" > /out
FROM bench-busybox:\$TARGETARCH
COPY --from=build /out /out
DOCKERFILE

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Prints the wall-clock seconds; appends the CPU seconds (rbuild and its sandboxes) to
# $WORK/cpu-PLATFORMS and the steps-run line to $WORK/steps-PLATFORMS.
time_build() { # CASE PLATFORMS
  local log=$WORK/log
  /usr/bin/time -o "$WORK/time" -f '%e %U %S' \
    "$RBUILD" build --progress plain --no-cache --platform "$2" -t "bench-$1" "$WORK/$1" \
    >/dev/null 2>"$log"
  read -r wall user sys < "$WORK/time"
  echo "$user + $sys" | bc >> "$WORK/cpu-${2//\//_}"
  grep -o '[0-9]* steps\? run, [0-9]* cached' "$log" > "$WORK/steps-${2//\//_}"
  echo "$wall"
}

printf '| case | amd64 alone s | arm64 alone s | sum s | both in one build s | both / sum | CPU s: sum of alone / both | steps, both |\n'
printf '|---|---|---|---|---|---|---|---|\n'
both=linux/amd64,linux/arm64
for case in emulated cross shared; do
  rm -f "$WORK"/cpu-* "$WORK"/wall-*
  for _ in $(seq "$ROUNDS"); do
    for platforms in linux/amd64 linux/arm64 $both; do
      time_build $case $platforms >> "$WORK/wall-${platforms//\//_}"
    done
  done
  w() { median < "$WORK/wall-${1//\//_}"; }
  c() { median < "$WORK/cpu-${1//\//_}"; }
  amd=$(w linux/amd64); arm=$(w linux/arm64); all=$(w $both)
  sum=$(echo "$amd + $arm" | bc)
  cpu_alone=$(echo "$(c linux/amd64) + $(c linux/arm64)" | bc)
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f | %s |\n' $case "$amd" "$arm" "$sum" \
    "$all" "$(echo "$all / $sum" | bc -l)" "$cpu_alone" "$(c $both)" \
    "$(cat "$WORK/steps-${both//\//_}")"
done
echo "rounds: $ROUNDS, 1-minute load average at the end: $(cut -d' ' -f1 /proc/loadavg)"
