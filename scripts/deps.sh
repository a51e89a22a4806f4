#!/usr/bin/env bash
# Installs what xenha's build, tests, demo and benchmarks need on Debian 12
# (or Ubuntu), and nothing that is already there. Safe to run again and from
# several shells at once. Prints one line per component: found, installed,
# or missing with the command that installs it.
#
# As root it installs what is missing. Otherwise, or when apt-get fails (no
# network), it says what is missing and goes on: the tests that need a
# missing component skip, naming it, and 'make test' lists them at the end.
# It fails only when nothing could be built (Go or the cgo build
# dependencies are missing), or under CI=true, where every test must run.
set -euo pipefail

# name|what it is for|Debian packages
components=(
	"build|cgo build of xenctl/libvirt, Go module downloads over https|gcc libc6-dev pkg-config libvirt-dev ca-certificates"
	"tools|namespaces, mounts and loop devices the tests set up|util-linux mount dash coreutils"
	"libvirt|private libvirtd with QEMU (TCG, no KVM needed) for xenctl/libvirt|libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils qemu-block-extra tini"
	"netguard|nftables in test-made network namespaces, real packets; iptables+arptables for make bench|nftables iproute2 iputils-ping iputils-arping tcpdump iptables arptables"
	"fence|simulated BMC (ipmi_sim), IPMI client, ClusterLabs fence agents|openipmi ipmitool fence-agents"
	"storage|nbd-server, qemu-nbd, tgtd, nfs-ganesha with rpcbind, drbdadm; /etc/services and /etc/protocols for the RPC tools|nbd-server nbd-client tgt nfs-ganesha nfs-ganesha-vfs rpcbind drbd-utils netbase"
	"operator|the xenha status page in headless Chromium, promtool for its alert rules|chromium prometheus"
)

say() { printf 'deps: %-9s %s\n' "$@"; }

# have: the packages installed now (one dpkg-query for all of them).
declare -A have
refresh() {
	local c pkgs all=() p status
	for c in "${components[@]}"; do
		IFS='|' read -r _ _ pkgs <<<"$c"
		# shellcheck disable=SC2206 # word splitting is the point
		all+=($pkgs)
	done
	have=()
	while read -r p status; do
		[[ $status == "install ok installed" ]] && have[$p]=1
	done < <(dpkg-query -W -f='${Package} ${Status}\n' "${all[@]}" 2>/dev/null || true)
}

# missing_of NAME prints the component's packages that are not installed.
missing_of() {
	local c name pkgs p
	for c in "${components[@]}"; do
		IFS='|' read -r name _ pkgs <<<"$c"
		[[ $name == "$1" ]] || continue
		for p in $pkgs; do
			[[ -n ${have[$p]:-} ]] || printf '%s ' "$p"
		done
	done
}

# Go is not a Debian package here: bookworm's golang is older than go.mod's.
want_go=$(awk '$1 == "go" { print $2; exit }' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null; then
	say go "missing: xenha needs Go $want_go or newer on PATH; install it from https://go.dev/dl (tar -C /usr/local -xzf go*.tar.gz; export PATH=/usr/local/go/bin:\$PATH)"
	exit 1
fi
say go "found      $(go env GOVERSION) ($(command -v go)), needs $want_go"

refresh
declare -A before
all_missing=()
for c in "${components[@]}"; do
	IFS='|' read -r name _ _ <<<"$c"
	before[$name]=$(missing_of "$name")
	# shellcheck disable=SC2206 # word splitting is the point
	all_missing+=(${before[$name]})
done

apt_failed=""
if ((${#all_missing[@]} > 0)) && [[ $(id -u) == 0 ]]; then
	export DEBIAN_FRONTEND=noninteractive
	# Several 'make test' runs may start together: one installs, the
	# others wait, then find everything there.
	exec 9>/tmp/xenha-deps.lock
	flock 9
	stamp=/var/lib/apt/periodic/xenha-update-stamp
	# Packages such as tgt, rpcbind, nbd-server and nfs-ganesha start their
	# daemons on install where an init system runs; the tests start their own
	# on private configurations, so nothing may be started for them. Debian's
	# policy-rc.d (exit 101: action forbidden) holds for this install only.
	policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\n# xenha deps.sh: start no service while it installs\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	{
		if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +1440 2>/dev/null) ]] || [[ -z $(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial) ]]; then
			apt-get -o DPkg::Lock::Timeout=600 update -q >&2 && mkdir -p "$(dirname "$stamp")" && touch "$stamp"
		fi &&
			apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${all_missing[@]}" >&2
	} || apt_failed="apt-get failed (its output is above: no network? no Debian mirror in /etc/apt/sources.list*?)"
	if [[ -n $policy ]]; then
		rm -f "$policy"
		trap - EXIT
	fi
	flock -u 9
fi

refresh
fatal=0
for c in "${components[@]}"; do
	IFS='|' read -r name what _ <<<"$c"
	now=$(missing_of "$name")
	if [[ -z ${before[$name]} ]]; then
		say "$name" "found      ($what)"
	elif [[ -z $now ]]; then
		say "$name" "installed  ${before[$name]}($what)"
	else
		why=${apt_failed:-"not root"}
		say "$name" "MISSING    ${now}($what): $why; install with: apt-get install --no-install-recommends ${now% }"
		if [[ $name == build || ${CI:-} == true ]]; then
			fatal=1
		fi
	fi
done
if ((fatal)); then
	if [[ ${CI:-} == true ]]; then
		echo "deps: CI=true and a component is missing: every test must run in CI" >&2
	else
		echo "deps: nothing builds without the build component" >&2
	fi
	exit 1
fi
