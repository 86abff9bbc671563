#!/usr/bin/env bash
# Checks rbuild on a cgroup v2 machine, as root and as an ordinary user, for what CI's
# cgroup v1 machines cannot show: limits on v2 (root), limits in a delegated v2 cgroup
# (rootless), a limit refused in a cgroup that is not delegated, and AppArmor's user
# namespace restriction (Ubuntu 23.10+). Run as root: check-rootless-v2.sh RBUILD BUSYBOX
# (a static busybox). Prints one line per check, `ok` or `FAIL`, and exits non-zero on a
# failure. Creates the user `rbcheck` and the cgroup /sys/fs/cgroup/rbcheck.slice.
set -uo pipefail
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  echo "this machine does not have cgroup v2 at /sys/fs/cgroup" >&2
  exit 2
fi
rbuild=$(realpath "$1")
busybox=$(realpath "$2")
work=$(mktemp -d /tmp/rbcheck.XXXXXX)
chmod 755 "$work"
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() { # check NAME EXPECTED-SUBSTRING COMMAND...
  local name=$1 expected=$2
  shift 2
  local out
  out=$("$@" 2>&1)
  if grep -qF -- "$expected" <<<"$out"; then ok "$name"; else fail "$name"; printf '%s\n' "$out" | tail -15 | sed 's/^/     | /'; fi
}

echo "== machine"
uname -r
grep -E ' - cgroup2? ' /proc/self/mountinfo | awk '{print $5, $(NF-2)}' | head -3
cat /sys/fs/cgroup/cgroup.controllers
echo "max_user_namespaces $(cat /proc/sys/user/max_user_namespaces)"
echo "apparmor_restrict_unprivileged_userns $(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo absent)"
command -v newuidmap newgidmap || echo "no newuidmap/newgidmap"

# A busybox base image, every file root's.
mkdir -p "$work/rootfs"/{bin,etc,tmp,proc,sys,dev}
cp "$busybox" "$work/rootfs/bin/busybox"
for applet in sh cat echo ls mkdir id true sleep tail head seq; do ln -s busybox "$work/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$work/rootfs/etc/group"
tar --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/busybox.tar" .
chmod 644 "$work/busybox.tar"
mkdir -p "$work/ctx"
printf 'FROM busybox\nRUN cat /sys/fs/cgroup/memory.max > /limit\n' > "$work/ctx/Dockerfile"
chmod -R a+rX "$work/ctx"

echo "== root, cgroup v2"
export RBUILD_ROOT=$work/root-store
"$rbuild" import "$work/busybox.tar" busybox >/dev/null
check "root: rbuild info says v2 with limits" "v2; --memory, --cpus and --pids-limit work" "$rbuild" info
check "root: --memory is memory.max" "33554432" "$rbuild" run --network host --memory 32m busybox cat /sys/fs/cgroup/memory.max
check "root: --cpus is cpu.max" "50000 100000" "$rbuild" run --network host --cpus 0.5 busybox cat /sys/fs/cgroup/cpu.max
check "root: out of memory is reported" "out of memory" "$rbuild" run --network host --memory 16m busybox sh -c 'tail /dev/zero'
check "root: --pids-limit holds" "pids.max" sh -c "\"$rbuild\" run --network host --pids-limit 3 busybox sh -c 'echo pids.max \$(cat /sys/fs/cgroup/pids.max); sleep 1 & sleep 1 & sleep 1 & sleep 1 & wait' 2>&1"
check "root: the command is pid 1" "pid 1" "$rbuild" run --network host busybox sh -c 'echo pid $$'
check "root: --init makes rbuild's init pid 1" "rbuild-init" "$rbuild" run --network host --init busybox cat /proc/1/cmdline
check "root: --stop-timeout kills a command that ignores SIGTERM" "rc 137" sh -c "\"$rbuild\" run --network host --stop-timeout 1 busybox sleep 30 & p=\$!; sleep 1; kill -TERM \$p; wait \$p; echo rc \$?"
check "root: a build's RUN gets --memory" "33554432" sh -c "\"$rbuild\" build --progress quiet --memory 32m -t lim \"$work/ctx\" >/dev/null && \"$rbuild\" run --network host lim cat /limit"
unset RBUILD_ROOT

echo "== the user"
id rbcheck >/dev/null 2>&1 || useradd -m -s /bin/sh rbcheck
grep -q '^rbcheck:' /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 --add-subgids 200000-265535 rbcheck 2>/dev/null || true
as_user() { setpriv --reuid=rbcheck --regid=rbcheck --init-groups env -i HOME=/home/rbcheck PATH=/usr/local/bin:/usr/bin:/bin COLUMNS=1000 "$@"; }
cp "$rbuild" /usr/local/bin/rbuild-check
chmod 755 /usr/local/bin/rbuild-check
userbin=/usr/local/bin/rbuild-check

restricted=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)
if [ "$restricted" = 1 ]; then
  check "user: AppArmor's restriction is named" "AppArmor denies capabilities in unprivileged user namespaces" as_user "$userbin" images
  sed "s#/usr/local/bin/rbuild #$userbin #" "$(dirname "$0")/../contrib/apparmor.d/rbuild" > /etc/apparmor.d/rbuild-check
  if apparmor_parser -r /etc/apparmor.d/rbuild-check; then ok "apparmor: rbuild's profile loads"; else fail "apparmor: rbuild's profile loads"; fi
fi
check "user: rbuild info is rootless" "rootless" as_user "$userbin" info
as_user "$userbin" info
check "user: import" "sha256:" as_user "$userbin" import "$work/busybox.tar" busybox
check "user: run" "uid=0(root)" as_user "$userbin" run busybox id
check "user: the command is pid 1" "pid 1" as_user "$userbin" run busybox sh -c 'echo pid $$'
check "user: --init, as another user" "2 uid=1000" as_user "$userbin" run --init -u 1000 busybox sh -c 'echo $$ uid=$(id -u)'
check "user: a limit outside a delegated cgroup is refused" "a memory limit needs a cgroup rbuild can write" as_user "$userbin" run --memory 32m busybox true

echo "== the user, in a delegated cgroup v2"
slice=/sys/fs/cgroup/rbcheck.slice
mkdir -p "$slice"
for controller in memory pids cpu; do echo "+$controller" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true; done
chown rbcheck:rbcheck "$slice" "$slice/cgroup.procs" "$slice/cgroup.subtree_control" "$slice/cgroup.threads"
# A subshell that moves itself into the delegated cgroup (as root) and runs rbuild there as
# the user, as systemd's Delegate=yes would start it; once rbuild has moved the cgroup's
# processes into `rbuild-init`, new ones start there (the cgroup itself takes none now).
in_slice() {
  local into=$slice
  [ -d "$slice/rbuild-init" ] && into=$slice/rbuild-init
  ( echo "$BASHPID" > "$into/cgroup.procs" && as_user "$@" )
}
check "delegated: rbuild info says limits work" "v2; --memory, --cpus and --pids-limit work" in_slice "$userbin" info
check "delegated: --memory is memory.max" "33554432" in_slice "$userbin" run --memory 32m busybox cat /sys/fs/cgroup/memory.max
check "delegated: --pids-limit is pids.max" "5" in_slice "$userbin" run --pids-limit 3 busybox cat /sys/fs/cgroup/pids.max
check "delegated: --memory with --init" "33554432" in_slice "$userbin" run --init --memory 32m busybox cat /sys/fs/cgroup/memory.max
check "delegated: --cpus is cpu.max" "50000 100000" in_slice "$userbin" run --cpus 0.5 busybox cat /sys/fs/cgroup/cpu.max
check "delegated: out of memory is reported" "out of memory" in_slice "$userbin" run --memory 16m busybox sh -c 'tail /dev/zero'
check "delegated: a build's RUN gets --memory" "33554432" in_slice sh -c "$userbin build --progress quiet --memory 32m -t lim $work/ctx >/dev/null && $userbin run lim cat /limit"
echo "cgroups below the delegated one:"
find "$slice" -maxdepth 2 -type d | sed "s#$slice#  rbcheck.slice#"

echo "== rbuild inside an unprivileged container (uid 1000, no capabilities, seccomp=unconfined)"
export RBUILD_ROOT=$work/root-store
outer=$work/outer
mkdir -p "$outer/rootfs/usr/local/bin" "$outer/rootfs/images" "$outer/home/ctx"
cp "$rbuild" "$outer/rootfs/usr/local/bin/rbuild"
for lib in $(ldd "$rbuild" | grep -o '/[^ ]*'); do
  mkdir -p "$outer/rootfs$(dirname "$lib")"
  cp -L "$lib" "$outer/rootfs$lib"
done
cp "$work/busybox.tar" "$outer/rootfs/images/busybox.tar"
printf 'FROM busybox\nRUN echo built inside > /x\n' > "$outer/home/ctx/Dockerfile"
printf 'FROM busybox\nCOPY rootfs/ /\nCOPY --chown=1000:1000 home/ /home/\nUSER 1000:1000\nENV HOME=/home\n' > "$outer/Dockerfile"
"$rbuild" build --progress quiet -t nested "$outer" >/dev/null
mkdir -p "$work/inner-store"
chown 1000:1000 "$work/inner-store"
check "nested: builds and runs with its store on a volume" "built inside" "$rbuild" run --network host --security-opt seccomp=unconfined -v "$work/inner-store:/store" -e RBUILD_ROOT=/store nested sh -c 'rbuild import /images/busybox.tar busybox >/dev/null && rbuild build --progress quiet -t inner /home/ctx >/dev/null && rbuild run inner cat /x && rbuild info'
check "nested: without a volume, copies" "snapshotter  copy" "$rbuild" run --network host --security-opt seccomp=unconfined -w /home nested sh -c 'rbuild import /images/busybox.tar busybox >/dev/null && rbuild build --progress quiet -t inner /home/ctx >/dev/null && rbuild run inner cat /x && rbuild info'
unset RBUILD_ROOT

echo "== $failures failure(s)"
[ "$failures" -eq 0 ]
