#!/bin/bash
# rbuild side by side with docker (BuildKit) and buildah on the same Dockerfiles.
#
# usage: bench/compare.sh [-n ROUNDS] [-c "case ..."] [-t "tool ..."] [-o RESULTS.tsv]
#   cases: small many-files big-file multistage rebuild-one-change noop-rebuild link-base-change
#   (default: all)
#   tools: rbuild docker buildah (default: all three; docker is skipped if dockerd is down)
#
# Setup (once per machine, as root): ../shared/bench/peers-setup.sh installs buildah and
# docker.io, starts dockerd (data under /tmp/peers, BuildKit on) and a registry on
# 127.0.0.1:5000 holding 127.0.0.1:5000/busybox:latest. rbuild uses its own store under
# /tmp/peers/rbuild and gets the same busybox image from that registry.
#
# Method: for each case, ROUNDS rounds; in each round every tool, in an order that alternates
# between rounds, does: prune (untimed: drop its build cache and built images), cold (timed
# build with an empty cache), warm (timed rebuild, nothing changed) and, for
# the CHANGE_CASES, change (changing.txt rewritten: the last COPY's source in
# rebuild-one-change, a step below a big `COPY --link` in link-base-change). Wall clock around the CLI.
# rbuild's peak RSS is recorded with /usr/bin/time. Results: a TSV (with the 1-minute load
# average per timing) and a markdown table of medians and per-round ratios, rbuild/docker and
# rbuild/buildah, from summarize.py.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=3
CASES="small many-files big-file multistage rebuild-one-change noop-rebuild link-base-change"
# Cases with a third, timed phase: `change`, after changing.txt is rewritten.
CHANGE_CASES=" rebuild-one-change link-base-change "
TOOLS="rbuild docker buildah"
OUT=/tmp/peers/results/compare-$(date +%Y%m%d-%H%M%S).tsv
while getopts "n:c:t:o:" o; do
  case $o in n) ROUNDS=$OPTARG ;; c) CASES=$OPTARG ;; t) TOOLS=$OPTARG ;; o) OUT=$OPTARG ;; *) exit 2 ;; esac
done

BASE=127.0.0.1:5000/busybox:latest
export CONTAINERS_STORAGE_CONF=/tmp/peers/storage.conf
export CONTAINERS_REGISTRIES_CONF=/tmp/peers/registries.conf
export CONTAINERS_CONF=/tmp/peers/containers.conf
export DOCKER_HOST=unix:///tmp/peers/docker.sock
export DOCKER_BUILDKIT=1
export RBUILD_ROOT=/tmp/peers/rbuild
DOCKER=/usr/bin/docker
RBUILD="$ROOT/target/release/rbuild"
LOGS=/tmp/peers/bench-logs
mkdir -p "$LOGS" "$(dirname "$OUT")" /tmp/peers/ctx

echo "building rbuild (release) ..." >&2
(cd "$ROOT" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --quiet)

if [[ " $TOOLS " == *" docker "* ]] && ! $DOCKER info >/dev/null 2>&1; then
  echo "dockerd not reachable on $DOCKER_HOST: skipping docker (run ../shared/bench/peers-setup.sh)" >&2
  TOOLS=${TOOLS//docker/}
fi
if [[ " $TOOLS " == *" buildah "* ]] && ! command -v buildah >/dev/null; then
  echo "buildah is not installed: skipping it" >&2
  TOOLS=${TOOLS//buildah/}
fi

now_ns() { date +%s%N; }
load1() { cut -d" " -f1 /proc/loadavg; }

rbuild_base() {
  "$RBUILD" inspect --manifest "$BASE" >/dev/null 2>&1 && return
  local tar=/tmp/peers/busybox-oci.tar
  skopeo copy --src-tls-verify=false "docker://$BASE" "oci-archive:$tar" >/dev/null
  "$RBUILD" load -i "$tar" -t "$BASE" >/dev/null
}

prune() { # tool
  case $1 in
    rbuild)
      "$RBUILD" images --format json | jq -r 'select(.Repository | startswith("bench/")) | "\(.Repository):\(.Tag)"' \
        | xargs -r "$RBUILD" rmi >/dev/null 2>&1 || true
      "$RBUILD" prune --all >/dev/null
      rbuild_base
      ;;
    buildah)
      buildah rm --all >/dev/null 2>&1 || true
      buildah rmi --all --force >/dev/null 2>&1 || true
      buildah pull --tls-verify=false -q "$BASE" >/dev/null
      ;;
    docker)
      $DOCKER ps -aq | xargs -r $DOCKER rm -f >/dev/null 2>&1 || true
      $DOCKER images --format '{{.Repository}}:{{.Tag}}' | grep '^bench/' | xargs -r $DOCKER rmi -f >/dev/null 2>&1 || true
      $DOCKER builder prune -af >/dev/null
      $DOCKER image prune -f >/dev/null
      $DOCKER image inspect "$BASE" >/dev/null 2>&1 || $DOCKER pull -q "$BASE" >/dev/null
      ;;
  esac
  # Untimed: write back what the prune and the previous tool left dirty, and give the
  # disk's discards (ext4 `-o discard` trims freed blocks after the commit) time to
  # settle, so no tool pays for another's deletions.
  sync
  sleep 3
}

# Prints "seconds peak-rss-kib" (rss only for rbuild; 0 otherwise).
build() { # tool case ctx
  local tool=$1 c=$2 ctx=$3 log="$LOGS/$2.$1.log" t0 t1 rc=0 rss=0
  t0=$(now_ns)
  case $tool in
    rbuild)
      /usr/bin/time -f "%M" -o "$LOGS/rss" "$RBUILD" build --network none --progress plain -t "bench/$c:rbuild" "$ctx" >>"$log" 2>&1 || rc=$?
      rss=$(tail -1 "$LOGS/rss")
      ;;
    buildah) buildah build --layers --network none -t "bench/$c:buildah" "$ctx" >>"$log" 2>&1 || rc=$? ;;
    docker) $DOCKER build --network none --progress plain -t "bench/$c:docker" "$ctx" >>"$log" 2>&1 || rc=$? ;;
  esac
  t1=$(now_ns)
  if [ $rc -ne 0 ]; then
    echo "BUILD FAILED: $tool $c (see $log)" >&2; tail -5 "$log" >&2
    # rbuild must build every case (the caller stops); a peer that cannot (docker
    # 20.10's frontend has no `COPY --link`) is left out of that case, and the run goes on.
    return 3
  fi
  awk -v a="$t0" -v b="$t1" -v m="$rss" 'BEGIN { printf "%.3f\t%s", (b - a) / 1e9, m }'
}

echo -e "case\ttool\tphase\tround\tseconds\trss_kib\tload1" > "$OUT"
# "tool:case" pairs a peer could not build.
UNSUPPORTED=" "
for c in $CASES; do
  ctx=/tmp/peers/ctx/$c
  if [ ! -f "$ctx/Dockerfile" ] || ! cmp -s "$HERE/cases/$c/Dockerfile" "$ctx/Dockerfile"; then
    echo "generating the context of $c ..." >&2
    "$HERE/cases/$c/gen.sh" "$ctx"
  fi
  for r in $(seq 1 "$ROUNDS"); do
    order=$TOOLS
    [ $((r % 2)) -eq 0 ] && order=$(echo "$TOOLS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for tool in $order; do
      [ -n "$tool" ] || continue
      [[ "$UNSUPPORTED" == *" $tool:$c "* ]] && continue
      [[ "$CHANGE_CASES" == *" $c "* ]] && echo initial > "$ctx/changing.txt"
      prune "$tool"
      if ! s=$(build "$tool" "$c" "$ctx"); then
        [ "$tool" = rbuild ] && exit 1
        echo "$tool cannot build $c: left out of this case" >&2
        UNSUPPORTED="$UNSUPPORTED$tool:$c "
        continue
      fi
      echo -e "$c\t$tool\tcold\t$r\t$s\t$(load1)" >> "$OUT"
      s=$(build "$tool" "$c" "$ctx"); echo -e "$c\t$tool\twarm\t$r\t$s\t$(load1)" >> "$OUT"
      if [[ "$CHANGE_CASES" == *" $c "* ]]; then
        echo "changed $(now_ns)" > "$ctx/changing.txt"
        s=$(build "$tool" "$c" "$ctx"); echo -e "$c\t$tool\tchange\t$r\t$s\t$(load1)" >> "$OUT"
      fi
      echo "$(date +%T) $c round $r $tool: $(awk -F'\t' -v c="$c" -v t="$tool" -v r="$r" '$1==c && $2==t && $4==r {printf "%s=%s ", $3, $5}' "$OUT")" >&2
    done
  done
  [[ "$CHANGE_CASES" == *" $c "* ]] && echo initial > "$ctx/changing.txt"
done

python3 "$HERE/summarize.py" "$OUT"
