#!/usr/bin/env bash
# rbuild's demo, on a fresh machine: installs busybox-static (as root), installs rbuild
# (scripts/install.sh) unless this checkout's is installed already, makes a busybox base
# image locally (no network), builds fixtures/contexts/demo and runs the result. Uses the
# default store (/var/lib/rbuild as root, ~/.local/share/rbuild as an ordinary user) unless
# RBUILD_ROOT says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /bin/busybox ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "the demo's base image needs busybox: sudo apt-get install busybox-static" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
if [ "$(id -u)" -ne 0 ] && ! command -v newuidmap >/dev/null; then
  echo "note: without uidmap (sudo apt-get install uidmap) rbuild maps your own user id alone" >&2
fi

# rbuild as installed by scripts/install.sh (built and installed now when it is not yet).
if [ "$(id -u)" -eq 0 ]; then
  rbuild="${PREFIX:-/usr/local}/bin/rbuild"
else
  rbuild="${PREFIX:-$HOME/.local}/bin/rbuild"
fi
if [ ! -x "$rbuild" ] || [ -n "$(find . -path ./target -prune -o \( -name '*.rs' -o -name Cargo.lock \) -newer "$rbuild" -print -quit)" ]; then
  ./scripts/install.sh
fi

echo "==> making a busybox base image from Debian's busybox-static"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs"/{bin,dev,etc,home/app,proc,root,sys,tmp,usr,var}
chmod 1777 "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
if [ "$(id -u)" -eq 0 ]; then
  chown 1000:1000 "$work/rootfs/home/app"
  tar --numeric-owner --sort=name --mtime=@0 -C "$work/rootfs" -cf "$work/rootfs.tar" .
else
  # An ordinary user cannot give a file to uid 1000: everything is root's in the tar.
  tar --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -C "$work/rootfs" -cf "$work/rootfs.tar" .
fi
"$rbuild" import "$work/rootfs.tar" busybox:latest

echo "==> rbuild build -t demo fixtures/contexts/demo"
start=$(date +%s.%N)
"$rbuild" build -t demo fixtures/contexts/demo
end=$(date +%s.%N)
printf '==> build took %.2fs\n' "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end - $start)")"

echo "==> rbuild run demo"
"$rbuild" run demo
echo "==> rbuild images"
"$rbuild" images
