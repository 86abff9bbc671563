#!/usr/bin/env bash
# Sandbox start-up cost: `rbuild run IMAGE /bin/true` against `runc run` of the same root
# filesystem and against a bare `unshare` of the same namespaces (with and without a
# chroot). The commands are interleaved round by round, so that a noisy moment of the
# machine hits them all alike; each is timed with bash's $EPOCHREALTIME (no fork to read
# the clock). Prints the median and minimum of each and their ratios.
#
#   sudo bench/run-start/run.sh [ROUNDS]        (default 200; needs root, runc, busybox)
#
# RBUILD=/path/to/rbuild picks the binary (default: target/release/rbuild, built if
# missing). Everything runs in a network namespace made for the run, so rbuild's bridge
# (measured too: `rbuild run --network bridge`) never touches the machine's interfaces.
set -euo pipefail
self="$(readlink -f "$0")"
cd "$(dirname "$self")/../.."

rounds="${1:-200}"
if [ "$(id -u)" -ne 0 ]; then
  echo "needs root (namespaces, overlayfs, cgroups)" >&2
  exit 1
fi
for tool in runc unshare chroot; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install $tool)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "missing /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }

if [ -z "${RBUILD:-}" ]; then
  RBUILD="$PWD/target/release/rbuild"
  [ -x "$RBUILD" ] || CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --release --bin rbuild >&2
fi

# In a network namespace of our own (loopback up), re-executed once.
if [ -z "${RUN_START_INSIDE:-}" ]; then
  exec env RUN_START_INSIDE=1 RBUILD="$RBUILD" unshare --net -- "$self" "$@"
fi
/bin/busybox ip link set lo up

work="$(mktemp -d /tmp/rbuild-run-start.XXXXXX)"
cleanup() {
  for id in $(runc list -q 2>/dev/null | grep '^run-start-' || true); do
    runc delete -f "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# One busybox root filesystem for all: rbuild imports it as an image, runc and chroot use
# it as it is.
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
tar -C "$rootfs" -cf "$work/rootfs.tar" .
export RBUILD_ROOT="$work/store"
"$RBUILD" import "$work/rootfs.tar" run-start:1 >/dev/null

# runc's default spec: new pid, net, ipc, uts, mount (and cgroup) namespaces, a read-only
# root, Docker-like capabilities; no terminal, `/bin/true` as the process.
(cd "$work/bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$work/bundle/config.json"
grep -q '"/bin/true"' "$work/bundle/config.json" || { echo "could not edit runc's config.json" >&2; exit 1; }

names=(
  "rbuild run (--network none)"
  "rbuild run (--network bridge)"
  "runc run"
  "unshare (same namespaces)"
  "unshare + chroot"
)
run_one() {
  case "$1" in
    0) "$RBUILD" run --network none run-start:1 /bin/true ;;
    1) "$RBUILD" run --network bridge run-start:1 /bin/true ;;
    2) runc run --bundle "$work/bundle" "run-start-$2" >/dev/null ;;
    3) unshare --mount --pid --fork --uts --ipc --net /bin/true ;;
    4) unshare --mount --pid --fork --uts --ipc --net chroot "$rootfs" /bin/true ;;
  esac
}

declare -A samples
for index in "${!names[@]}"; do
  run_one "$index" warmup || { echo "${names[$index]} failed" >&2; exit 1; }
  samples[$index]=""
done
echo "interleaving ${#names[@]} commands, $rounds rounds (cgroup: $(
  [ -e /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1
), kernel $(uname -r))" >&2
for ((round = 0; round < rounds; round++)); do
  for index in "${!names[@]}"; do
    start=$EPOCHREALTIME
    run_one "$index" "$round"
    end=$EPOCHREALTIME
    # Microseconds, without a fork: drop the decimal point of the seconds.
    samples[$index]+="$(( ${end/./} - ${start/./} )) "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
minimum() { tr ' ' '\n' | grep . | sort -n | head -1; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

declare -A medians
printf '%-32s %10s %10s\n' "command" "median ms" "min ms"
for index in "${!names[@]}"; do
  med=$(median <<<"${samples[$index]}")
  min=$(minimum <<<"${samples[$index]}")
  medians[$index]=$med
  printf '%-32s %10s %10s\n' "${names[$index]}" "$(ms "$med")" "$(ms "$min")"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "rbuild run (none) / runc run:           $(ratio "${medians[0]}" "${medians[2]}")"
echo "rbuild run (none) / unshare:            $(ratio "${medians[0]}" "${medians[3]}")"
echo "rbuild run (none) / unshare + chroot:   $(ratio "${medians[0]}" "${medians[4]}")"
echo "rbuild run (bridge) / rbuild run (none): $(ratio "${medians[1]}" "${medians[0]}")"
