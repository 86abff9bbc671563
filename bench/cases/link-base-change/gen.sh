#!/bin/sh
# usage: gen.sh OUTDIR -- payload/: 400 files of 512 KiB (200 MiB, incompressible) + changing.txt
set -eu
out=${1:?usage: gen.sh OUTDIR}; here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"; mkdir -p "$out/payload"; cp "$here/Dockerfile" "$out/Dockerfile"
for d in $(seq 1 20); do
  mkdir -p "$out/payload/d$d"
  for f in $(seq 1 20); do head -c 524288 /dev/urandom > "$out/payload/d$d/f$f.bin"; done
done
echo "initial" > "$out/changing.txt"
