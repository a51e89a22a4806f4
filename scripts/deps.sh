#!/usr/bin/env bash
# Installs what xenha's build, tests and demo need on Debian 12, and nothing
# that is already there. Safe to run again; run as root (or it only reports).
set -euo pipefail

packages=(
	# build: cgo for xenctl/libvirt
	gcc pkg-config libvirt-dev
	# libvirt: test driver, real libvirtd + QEMU (TCG) for the integration tests
	libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils qemu-block-extra tini
	# netguard: nftables, namespaces, real packets; the seeds' iptables+arptables for comparison
	nftables iproute2 iputils-ping iputils-arping iptables arptables tcpdump
	# fence: simulated BMC, IPMI client, ClusterLabs agents
	openipmi ipmitool fence-agents
	# storage: userspace servers and the host-mode tools
	nbd-server nbd-client tgt open-iscsi nfs-ganesha nfs-ganesha-vfs rpcbind drbd-utils util-linux
	# examples/xenha: its status page tested in a real headless browser; promtool checks its alert rules
	chromium prometheus
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: run 'make deps' as root, or: apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/xenha-update-stamp
if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +1440 2>/dev/null) ]]; then
	apt-get update -q
	mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
