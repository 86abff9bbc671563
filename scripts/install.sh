#!/usr/bin/env bash
# Installs rbuild from this checkout: checks what building and running it needs, builds it
# (release, with cargo's progress), installs the binary and shows what rbuild finds on this
# machine (`rbuild info`).
#
#   ./scripts/install.sh               # root: /usr/local/bin; a user: ~/.local/bin
#   PREFIX=/opt/rbuild ./scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "install: $*" >&2
  exit 1
}
note() {
  echo "install: $*" >&2
}

if [ "$(id -u)" -eq 0 ]; then
  prefix="${PREFIX:-/usr/local}"
else
  prefix="${PREFIX:-$HOME/.local}"
fi

# What building needs: cargo, and a Rust as new as Cargo.toml's rust-version.
[ "$(uname -s)" = Linux ] || fail "rbuild runs on Linux only (it uses namespaces, overlayfs and cgroups)"
needed=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if ! command -v cargo >/dev/null; then
  fail "cargo is missing: install Rust $needed or later with rustup (https://rustup.rs); Debian 12's packaged Rust (1.63) is too old"
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$needed" "$have" | sort -V | head -1)" != "$needed" ]; then
  fail "rustc $have is older than the $needed rbuild needs: \`rustup update\` (or install Rust with rustup, https://rustup.rs)"
fi

# What running needs. Problems here are reported, not fatal: `rbuild info` says more.
grep -qw overlay /proc/filesystems 2>/dev/null ||
  note "overlayfs is not loaded (\`modprobe overlay\`); without it rbuild copies files for each step (slower)"
if [ "$(id -u)" -ne 0 ]; then
  if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)" = 0 ]; then
    note "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0): rbuild cannot run as an ordinary user here"
  fi
  command -v newuidmap >/dev/null ||
    note "newuidmap is missing (Debian: \`sudo apt-get install uidmap\`): images that use other users than root will not build"
  grep -q "^$(id -un):" /etc/subuid 2>/dev/null ||
    note "$(id -un) has no subordinate ids in /etc/subuid: \`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un)\`"
fi

echo "==> building rbuild $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) (release; a few minutes the first time)" >&2
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(nproc)}" cargo build --release --locked --bin rbuild

echo "==> installing $prefix/bin/rbuild" >&2
install -D -m 0755 target/release/rbuild "$prefix/bin/rbuild"

case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) note "$prefix/bin is not on your PATH: add \`export PATH=\"$prefix/bin:\$PATH\"\` to your shell's profile" ;;
esac

echo "==> rbuild info" >&2
"$prefix/bin/rbuild" info
