#!/bin/bash
# rbuild as root against rbuild as an ordinary user (rootless), on the benchmark cases.
#
# usage: bench/rootless.sh [-n ROUNDS] [-c "case ..."] [-m "mode ..."] [-o RESULTS.tsv]
#   cases: small many-files big-file multistage rebuild-one-change noop-rebuild (default: all)
#   modes: root (overlayfs), user (overlayfs with userxattr in rbuild's user namespace),
#          user-copy (the copy snapshotter, forced with RBUILD_SNAPSHOTTER=copy)
#
# Run as root. The user is `rbuild-test` (scripts/test.sh creates it, with subordinate ids);
# each mode has its own store under /tmp/rootless-bench, every one with the same busybox
# base image named 127.0.0.1:5000/busybox:latest (made from Debian's busybox-static, no
# registry needed). Method as bench/compare.sh: per case and round, each mode in an order
# that alternates between rounds: prune (untimed), cold, warm and, for rebuild-one-change,
# change; wall clock around the CLI; `--network none`. Prints medians and the ratios of
# each mode to root (medians of per-round ratios).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
CASES="small many-files big-file multistage rebuild-one-change noop-rebuild"
MODES="root user user-copy"
WORK=/tmp/rootless-bench
OUT=$WORK/results/rootless-$(date +%Y%m%d-%H%M%S).tsv
while getopts "n:c:m:o:" o; do
  case $o in n) ROUNDS=$OPTARG ;; c) CASES=$OPTARG ;; m) MODES=$OPTARG ;; o) OUT=$OPTARG ;; *) exit 2 ;; esac
done
USER_NAME=rbuild-test
BASE=127.0.0.1:5000/busybox:latest

command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (it runs rbuild as root and as $USER_NAME)" >&2; exit 1; }
id "$USER_NAME" >/dev/null || { echo "no user $USER_NAME: run scripts/test.sh once as root" >&2; exit 1; }
echo "building rbuild (release) ..." >&2
(cd "$ROOT" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --quiet)
mkdir -p "$WORK/bin" "$WORK/ctx" "$WORK/logs" "$(dirname "$OUT")" "$WORK/user"
chmod 755 "$WORK" "$WORK/bin" "$WORK/ctx"
chown "$USER_NAME:" "$WORK/user"
install -m 755 "$ROOT/target/release/rbuild" "$WORK/bin/rbuild"
RBUILD=$WORK/bin/rbuild

# The base image, every file root's.
if [ ! -f "$WORK/busybox.tar" ]; then
  rootfs=$WORK/rootfs
  rm -rf "$rootfs" && mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\n' > "$rootfs/etc/group"
  tar --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -C "$rootfs" -cf "$WORK/busybox.tar" .
  chmod 644 "$WORK/busybox.tar"
fi

run_mode() { # mode args...
  local mode=$1
  shift
  case $mode in
    root) RBUILD_ROOT=$WORK/root-store "$RBUILD" "$@" ;;
    user) setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
      env -i HOME="$WORK/user" PATH=/usr/bin:/bin RBUILD_ROOT="$WORK/user/store" "$RBUILD" "$@" ;;
    user-copy) setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
      env -i HOME="$WORK/user" PATH=/usr/bin:/bin RBUILD_ROOT="$WORK/user/copy-store" \
      RBUILD_SNAPSHOTTER=copy "$RBUILD" "$@" ;;
  esac
}

prune() { # mode
  local images
  images=$(run_mode "$1" images --format json \
    | jq -r 'select(.Repository | startswith("bench/")) | "\(.Repository):\(.Tag)"')
  for image in $images; do run_mode "$1" rmi "$image" >/dev/null; done
  run_mode "$1" prune --all >/dev/null
  run_mode "$1" inspect --manifest "$BASE" >/dev/null 2>&1 \
    || run_mode "$1" import "$WORK/busybox.tar" "$BASE" >/dev/null
  sync
  sleep 3
}

build() { # mode case ctx -> seconds
  local t0 t1
  t0=$(date +%s%N)
  if ! run_mode "$1" build --network none --progress plain -t "bench/$2:$1" "$3" >>"$WORK/logs/$2.$1.log" 2>&1; then
    echo "BUILD FAILED: $1 $2 (see $WORK/logs/$2.$1.log)" >&2
    tail -20 "$WORK/logs/$2.$1.log" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}

echo -e "case\tmode\tphase\tround\tseconds\tload1" > "$OUT"
for c in $CASES; do
  ctx=$WORK/ctx/$c
  if [ ! -f "$ctx/Dockerfile" ] || ! cmp -s "$HERE/cases/$c/Dockerfile" "$ctx/Dockerfile"; then
    echo "generating the context of $c ..." >&2
    "$HERE/cases/$c/gen.sh" "$ctx"
    chmod -R a+rX "$ctx"
  fi
  for r in $(seq 1 "$ROUNDS"); do
    order=$MODES
    [ $((r % 2)) -eq 0 ] && order=$(echo "$MODES" | tr ' ' '\n' | tac | tr '\n' ' ')
    for mode in $order; do
      [ -n "$mode" ] || continue
      [ "$c" = rebuild-one-change ] && echo initial > "$ctx/changing.txt" && chmod a+r "$ctx/changing.txt"
      prune "$mode"
      s=$(build "$mode" "$c" "$ctx"); echo -e "$c\t$mode\tcold\t$r\t$s\t$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
      s=$(build "$mode" "$c" "$ctx"); echo -e "$c\t$mode\twarm\t$r\t$s\t$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
      if [ "$c" = rebuild-one-change ]; then
        echo "changed $(date +%s%N)" > "$ctx/changing.txt"
        s=$(build "$mode" "$c" "$ctx"); echo -e "$c\t$mode\tchange\t$r\t$s\t$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
      fi
      echo "$(date +%T) $c round $r $mode: $(awk -F'\t' -v c="$c" -v m="$mode" -v r="$r" '$1==c && $2==m && $4==r {printf "%s=%s ", $3, $5}' "$OUT")" >&2
    done
  done
  [ "$c" = rebuild-one-change ] && echo initial > "$ctx/changing.txt"
done

python3 - "$OUT" "$MODES" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
modes = sys.argv[2].split()
times = {}
for row in rows:
    times.setdefault((row["case"], row["phase"]), {}).setdefault(row["mode"], {})[row["round"]] = float(row["seconds"])
others = [m for m in modes if m != "root"]
print("| case | phase | " + " | ".join(f"{m} s" for m in modes) + " | " + " | ".join(f"{m}/root" for m in others) + " |")
print("|" + "---|" * (2 + len(modes) + len(others)))
for (case, phase), by_mode in sorted(times.items()):
    cells = [f"{statistics.median(by_mode[m].values()):.2f}" if m in by_mode else "" for m in modes]
    ratios = []
    for m in others:
        pairs = [by_mode[m][r] / by_mode["root"][r] for r in by_mode.get(m, {}) if r in by_mode.get("root", {}) and by_mode["root"][r] > 0]
        ratios.append(f"{statistics.median(pairs):.2f}" if pairs else "")
    print(f"| {case} | {phase} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
loads = [float(r["load1"]) for r in rows]
print(f"\n1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f}; rounds: {max(int(r['round']) for r in rows)}")
EOF
