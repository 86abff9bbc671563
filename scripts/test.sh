#!/usr/bin/env bash
# Runs rbuild's whole test suite. Installs the Debian packages the tests use when they are
# missing (busybox-static for base images; skopeo and umoci to check images; docker-registry,
# apache2-utils (htpasswd) and openssl for the registry tests; uidmap for rootless rbuild;
# openssh-client and openssh-server for the SSH agent forwarding tests, which log in to an
# sshd of their own on 127.0.0.1; git for the git sources).
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
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${packages[*]} (run as root, or: sudo apt-get install ${packages[*]})" >&2
    exit 1
  fi
  echo "installing ${packages[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [ "$(id -u)" -eq 0 ]; then
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
