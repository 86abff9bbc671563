#!/usr/bin/env bash
# Runs rbuild's whole test suite. Installs the Debian packages the tests use when they are
# missing (busybox-static for base images; skopeo and umoci to check images; docker-registry,
# apache2-utils (htpasswd) and openssl for the registry tests; uidmap for rootless rbuild;
# openssh-client and openssh-server for the SSH agent forwarding tests, which log in to an
# sshd of their own on 127.0.0.1; git for the git sources; qemu-user-static, whose aarch64
# handler it registers with the kernel (with the F flag), and busybox-static for arm64 in
# /var/cache/rbuild-tests, for the cross-platform tests; debootstrap, for a Debian minbase
# image in /var/cache/rbuild-tests that the SBOM test lists the packages of).
# Needs root for the privileged tests (namespaces, overlayfs, cgroups); without root they
# skip, unless RBUILD_PRIVILEGED_TESTS=1 makes a skip a failure.
#
# The rootless tests run rbuild as two ordinary users this script creates (as root) when
# they are missing: `rbuild-test`, with subordinate ids 300000-365535 in /etc/subuid and
# /etc/subgid, and `rbuild-test-nosubid`, without any.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /bin/busybox ] || packages+=(busybox-static)
command -v skopeo >/dev/null || packages+=(skopeo)
command -v umoci >/dev/null || packages+=(umoci)
[ -x /usr/bin/docker-registry ] || packages+=(docker-registry)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
command -v openssl >/dev/null || packages+=(openssl)
command -v newuidmap >/dev/null || packages+=(uidmap)
command -v ssh-agent >/dev/null || packages+=(openssh-client)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v git >/dev/null || packages+=(git)
[ -x /usr/bin/qemu-aarch64-static ] || packages+=(qemu-user-static)
[ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${packages[*]} (run as root, or: sudo apt-get install ${packages[*]})" >&2
    exit 1
  fi
  echo "installing ${packages[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

ARM64_BUSYBOX=/var/cache/rbuild-tests/busybox-static_arm64.deb
if [ "$(id -u)" -eq 0 ]; then
  # The cross-platform tests' arm64 base image comes from Debian's busybox-static for arm64.
  if [ ! -f "$ARM64_BUSYBOX" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    mkdir -p "$(dirname "$ARM64_BUSYBOX")"
    (cd "$(dirname "$ARM64_BUSYBOX")" && rm -f busybox-static_*_arm64.deb \
      && apt-get download -qq busybox-static:arm64 \
      && mv busybox-static_*_arm64.deb "$ARM64_BUSYBOX")
  fi
  # The SBOM test's Debian image: a debootstrap minbase of this machine's release, without
  # apt's downloaded packages and lists (80 MB nobody reads).
  DEBIAN_MINBASE=/var/cache/rbuild-tests/debian-minbase.tar
  if [ ! -f "$DEBIAN_MINBASE" ]; then
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mkdir -p /var/cache/rbuild-tests
    rootfs=$(mktemp -d /var/cache/rbuild-tests/debootstrap.XXXXXX)
    debootstrap --variant=minbase "$codename" "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -cf "$DEBIAN_MINBASE.part" .
    mv "$DEBIAN_MINBASE.part" "$DEBIAN_MINBASE"
    rm -rf "$rootfs"
  fi
  # QEMU's aarch64 handler, registered with the F flag (the kernel opens the emulator now,
  # so sandboxes without it in their root can use it), as systemd-binfmt would at boot.
  binfmt=/proc/sys/fs/binfmt_misc
  [ -e $binfmt/status ] || mount -t binfmt_misc binfmt_misc $binfmt
  if [ ! -e $binfmt/qemu-aarch64 ]; then
    if [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
      grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > $binfmt/register
    else
      printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' > $binfmt/register
    fi
  fi
  if ! id rbuild-test >/dev/null 2>&1; then
    useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 -M -s /usr/sbin/nologin rbuild-test
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 rbuild-test
  fi
  if ! id rbuild-test-nosubid >/dev/null 2>&1; then
    useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 -M -s /usr/sbin/nologin rbuild-test-nosubid
  fi
fi

if [ "${RBUILD_REQUIRE_CONFORMANCE:-}" = 1 ] && [ ! -d ../shared/conformance/buildkit ]; then
  echo "BuildKit conformance data not found at ../shared/conformance/buildkit" >&2
  exit 1
fi

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
