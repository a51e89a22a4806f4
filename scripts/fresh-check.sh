#!/usr/bin/env bash
# fresh-check: does xenha work on a machine that has nothing? Builds a
# minimal Debian 12 root with debootstrap (base system plus make), puts a
# clean `git archive HEAD` in it, and runs the README's two commands there as
# root: `make demo`, then `make test` (with CI=true, so nothing may skip). Go
# comes from this machine (/usr/local/go, bind-mounted read-only), as it would
# be installed on a new one; Go modules come from this machine's module cache
# (read-only, as a file:// GOPROXY) and then from its GOPROXY.
#
# Usage (as root): make fresh-check, or bash scripts/fresh-check.sh
#   FRESH_LOG=file     the whole log (default /tmp/xenha-fresh-check.log)
#   FRESH_DIR=dir      where to build the root (default a new dir in /var/tmp)
#   FRESH_KEEP=1       keep the root afterwards (it is removed otherwise)
#   FRESH_CI=false     let tests skip instead of failing (default CI=true)
#
# Needs network access to the Debian mirror of /etc/apt/sources.list.d or
# /etc/apt/sources.list (debootstrap, then deps.sh's apt-get inside the root).
# Unmounts everything and stops every process left in the root on exit.
# Uncommitted changes are not checked: it archives HEAD.
set -euo pipefail

# One compound command: bash reads it whole before it runs any of it, so an
# edit of this file during a run (which takes minutes) cannot change the run.
{
repo=$(cd "$(dirname "$0")/.." && pwd)
log=${FRESH_LOG:-/tmp/xenha-fresh-check.log}
suite=bookworm
start=$(date +%s)

fail() {
	echo "fresh-check: $*" >&2
	exit 1
}
step() { echo "fresh-check: [$(($(date +%s) - start)) s] $*" | tee -a "$log"; }

[[ $(id -u) == 0 ]] || fail "must run as root (debootstrap, chroot, mounts)"
# Every mount of the check, and of the tests in the root, stays in a mount
# namespace of its own: the machine's mount table never shows them (a
# libvirtd started meanwhile on the machine would find the root's cgroup
# mounts there), and they all go when the check ends.
if [[ -z ${XENHA_FRESH_NS:-} ]]; then
	exec env XENHA_FRESH_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
[[ -x /usr/local/go/bin/go ]] || fail "no Go in /usr/local/go: the root gets Go from there"
: >"$log"

# The machine's Debian mirror, so the root installs what this machine would.
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [[ -z $mirror ]]; then
	mirror=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null; then
	step "installing debootstrap"
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap >>"$log" 2>&1 ||
		fail "could not install debootstrap with apt-get (no network, or no Debian mirror configured); see $log"
fi

root=${FRESH_DIR:-$(mktemp -d /var/tmp/xenha-fresh.XXXXXX)}
mkdir -p "$root"

# cleanup stops what is left running in the root (started by this script's
# chroot, found by their root directory), then unmounts, then removes it.
cleanup() {
	local rc=$? pids=() p
	for p in /proc/[0-9]*; do
		if [[ $(readlink "$p/root" 2>/dev/null) == "$root" ]]; then
			pids+=("${p#/proc/}")
		fi
	done
	if ((${#pids[@]} > 0)); then
		kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 1
	fi
	# Deepest first; a lazy unmount for anything still busy.
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	if awk -v r="$root" '$5 == r || index($5, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		echo "fresh-check: some mounts under $root are still there; not removing it" >&2
	elif [[ ${FRESH_KEEP:-} == 1 ]]; then
		echo "fresh-check: kept the root in $root"
	else
		rm -rf --one-file-system "$root"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "debootstrap --variant=minbase $suite from $mirror into $root"
if ! debootstrap --variant=minbase --include=make "$suite" "$root" "$mirror" >>"$log" 2>&1; then
	tail -20 "$log" >&2
	fail "debootstrap failed: building the root needs network access to $mirror (see $log). Without it, do by hand on a fresh Debian 12 machine: install make and Go, git clone, make demo, make test"
fi
# The machine's sources (updates and security too), and a name server.
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
	cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
	: >"$root/etc/apt/sources.list"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# No service starts inside a chroot: a daemon started by a package's
# postinst would outlive the check and run outside its tests' control.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

step "git archive HEAD ($(git -C "$repo" rev-parse --short HEAD)) into /root/xenha"
mkdir -p "$root/root/xenha"
git -C "$repo" archive HEAD | tar -x -C "$root/root/xenha"

# What the tests need from the kernel: their own /proc, the machine's
# devices and sysfs (loop devices, network namespaces), an empty /run and
# /tmp, and Go.
mkdir -p "$root/usr/local/go" "$root/mnt/gomodcache"
# The root is a mount point on a real machine; 'ip -n NS' (which makes / a
# slave mount in its own mount namespace) fails on a chroot whose / is not.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs tmpfs "$root/run"
# What boot creates in /run: /var/lock points to /run/lock, and dpkg refuses
# to unpack a package into a dangling /var/lock (drbd-utils does).
mkdir -p "$root/run/lock" && chmod 1777 "$root/run/lock"
# And what boot makes in /etc (systemd-tmpfiles' debian.conf): nfs-ganesha's
# VFS layer reads the mount table through /etc/mtab.
[[ -e $root/etc/mtab ]] || ln -s ../proc/self/mounts "$root/etc/mtab"
mount --bind -o ro /usr/local/go "$root/usr/local/go"
mount -o remount,bind,ro "$root/usr/local/go"
goproxy=$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)
modcache=$(go env GOMODCACHE 2>/dev/null || true)
if [[ -d $modcache/cache/download ]]; then
	mount --bind "$modcache/cache/download" "$root/mnt/gomodcache"
	mount -o remount,bind,ro "$root/mnt/gomodcache"
	goproxy="file:///mnt/gomodcache,$goproxy"
fi

inside() {
	chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		GOPROXY="$goproxy" GOFLAGS=-mod=mod CI="${FRESH_CI:-true}" \
		bash -c "cd /root/xenha && $1"
}

result=0
for cmd in "make demo" "make test"; do
	t0=$(date +%s)
	step "$cmd (as root in the fresh root)"
	if inside "$cmd" >>"$log" 2>&1; then
		step "$cmd passed in $(($(date +%s) - t0)) s"
	else
		step "$cmd FAILED (exit $?) after $(($(date +%s) - t0)) s"
		result=1
		break
	fi
done

# The root as make left it: no libvirt system package, no /etc/libvirt, no
# libvirt-qemu user (the private libvirtd of the tests needs none of them).
step "in the root: $(inside 'ls -d /etc/libvirt 2>/dev/null || echo no /etc/libvirt'), $(inside 'getent passwd libvirt-qemu >/dev/null && echo a libvirt-qemu user || echo no libvirt-qemu user'), $(inside 'dpkg-query -W -f="\${Status}" libvirt-daemon-system 2>/dev/null | grep -q "ok installed" && echo libvirt-daemon-system installed || echo no libvirt-daemon-system')"
echo "---- the last 40 lines of $log"
tail -40 "$log"
if ((result == 0)); then
	step "PASS: make demo and make test pass on a fresh Debian 12 root, in $(($(date +%s) - start)) s in all"
else
	step "FAIL after $(($(date +%s) - start)) s; the whole log is $log"
fi
exit "$result"
}
