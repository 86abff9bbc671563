#!/usr/bin/env bash
# Push and pull of a 1 GiB image to a local docker-registry: rbuild next to skopeo copy.
#
#   bench/registry/run.sh [WORKDIR]     (as root; needs docker-registry and skopeo)
#
# Makes a 1 GiB file of random bytes, imports it as a one-layer image (gzip, as `rbuild
# import` stores it), saves it as an OCI archive for skopeo, then times, each against a
# fresh registry (so nothing is skipped or mounted):
#   push:  rbuild push            vs  skopeo copy oci-archive:… docker://…
#   pull:  rbuild pull (+unpack)  vs  skopeo copy docker://… oci:DIR
# and the push of a *built* 1 GiB layer (stored uncompressed, gzip-compressed at push).
set -euo pipefail
cd "$(dirname "$0")/../.."
RBUILD=${RBUILD:-$PWD/target/release/rbuild}
WORK=${1:-/tmp/rbuild-registry-bench}
mkdir -p "$WORK"
cd "$WORK"
export RBUILD_ROOT=$WORK/store
if [ ! -f big.tar ]; then
  mkdir -p rootfs
  head -c 1073741824 /dev/urandom > rootfs/big.bin
  tar -C rootfs -cf big.tar .
fi
"$RBUILD" images | grep -q '^big ' || "$RBUILD" import big.tar big:1 >/dev/null
[ -f big-oci.tar ] || "$RBUILD" save big:1 -o big-oci.tar

registry_pid=
start_registry() {
  stop_registry
  rm -rf data
  cat > registry.yml <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:15999, secret: bench}
YML
  docker-registry serve registry.yml >registry.log 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/15999) 2>/dev/null && return; sleep 0.1; done
  echo "registry did not start" >&2; exit 1
}
stop_registry() { [ -n "$registry_pid" ] && kill "$registry_pid" && wait "$registry_pid" 2>/dev/null || true; registry_pid=; }
trap stop_registry EXIT
t() { local start=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(echo "$(date +%s.%N) - $start" | bc)"; }

start_registry
echo "push  rbuild: $(t "$RBUILD" push -q big:1 127.0.0.1:15999/bench/big:1) s"
start_registry
echo "push  skopeo: $(t skopeo copy --dest-tls-verify=false oci-archive:big-oci.tar docker://127.0.0.1:15999/bench/big:1) s"
rm -rf pulled-store pulled-oci
echo "pull  rbuild: $(RBUILD_ROOT=$WORK/pulled-store t "$RBUILD" pull -q 127.0.0.1:15999/bench/big:1) s (download, verify, unpack)"
echo "pull  skopeo: $(t skopeo copy --src-tls-verify=false docker://127.0.0.1:15999/bench/big:1 oci:pulled-oci:big) s (download, verify)"
rm -rf pulled-store pulled-oci

# A built layer: kept uncompressed, compressed at push.
if ! "$RBUILD" images | grep -q '^bb '; then
  mkdir -p bb/bin && cp /bin/busybox bb/bin/ && ln -sf busybox bb/bin/sh
  tar -C bb -cf bb.tar . && "$RBUILD" import bb.tar bb:1 >/dev/null
fi
mkdir -p ctx
printf 'FROM bb:1\nRUN /bin/busybox head -c 1073741824 /dev/urandom > /built.bin\n' > ctx/Dockerfile
"$RBUILD" images | grep -q '^built ' || "$RBUILD" build --progress quiet -t built:1 ctx >/dev/null
start_registry
"$RBUILD" push -q big:1 127.0.0.1:15999/bench/built:1 >/dev/null
"$RBUILD" prune >/dev/null  # drops the compressed blob a previous run kept
echo "push  rbuild, built 1 GiB layer (gzip at push, first time): $(t "$RBUILD" push -q built:1 127.0.0.1:15999/bench/built:1) s"
start_registry
"$RBUILD" push -q bb:1 127.0.0.1:15999/bench/built:1 >/dev/null
echo "push  rbuild, built 1 GiB layer (compressed blob remembered): $(t "$RBUILD" push -q built:1 127.0.0.1:15999/bench/built:1) s"
