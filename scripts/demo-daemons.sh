#!/usr/bin/env bash
# demo-daemons.sh: a three-member xenha pool on this machine, started from
# configuration files, driven with the xenha CLI alone.
#
#   scripts/demo-daemons.sh start [DIR]   build xenha, make a CA, certificates and
#                                         three configs in DIR, start h1 h2 h3
#   scripts/demo-daemons.sh stop [DIR]    stop the three daemons
#
# Each member uses libvirt's test driver (test:///default) as its hypervisor
# and IPMI fencing towards a BMC that does not answer (127.0.0.1:1), so a
# killed member stays suspect until an operator acknowledges it with
# `xenha fence HOST`. Members listen on loopback only.
set -euo pipefail
cmd=${1:-start}
dir=${2:-/tmp/xenha-demo}
cd "$(dirname "$0")/.."

stop() {
	for h in h1 h2 h3; do
		if [ -f "$dir/$h.pid" ]; then
			kill "$(cat "$dir/$h.pid")" 2>/dev/null || true
			rm -f "$dir/$h.pid"
		fi
	done
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac

stop
rm -rf "$dir"
mkdir -p -m 0700 "$dir"
go build -o "$dir/xenha" ./examples/xenha
x="$dir/xenha"
$x ca init demo --dir "$dir/ca" >/dev/null
$x ca issue operator admin --dir "$dir/ca" >/dev/null
head -c 24 /dev/urandom | base64 >"$dir/token"
echo "demo-password" >"$dir/bmc"
chmod 600 "$dir/token" "$dir/bmc"

port() { echo $((17000 + $1)); }
for i in 1 2 3; do
	h=h$i
	$x ca issue member $h --dir "$dir/ca" >/dev/null
	if [ $i = 1 ]; then enter='"bootstrap": true'; else enter="\"join\": [\"127.0.0.1:$(port 11)\"]"; fi
	fence=""
	for j in 1 2 3; do
		[ $j = $i ] && continue
		fence="$fence${fence:+,}\"h$j\": [{\"method\": \"ipmi\", \"address\": \"127.0.0.1\", \"port\": 1, \"user\": \"fencer\", \"password_file\": \"$dir/bmc\", \"timeout\": \"2s\"}]"
	done
	cat >"$dir/$h.json" <<JSON
{
  "id": "$h",
  "cluster_id": "demo",
  "data_dir": "$dir/$h.data",
  "bind": "127.0.0.1:$(port 1$i)",
  $enter,
  "join_token_file": "$dir/token",
  "tls": {"ca": "$dir/ca/members/$h/ca.pem", "cert": "$dir/ca/members/$h/$h.pem", "key": "$dir/ca/members/$h/$h.key"},
  "profile": "default",
  "hypervisor": "test:///default",
  "fence": {$fence},
  "api": {"listen": "127.0.0.1:$(port 2$i)", "status_listen": "127.0.0.1:$(port 3$i)", "crl": "$dir/ca/crl.pem"}
}
JSON
	$x daemon -check -config "$dir/$h.json" >/dev/null
	$x daemon -config "$dir/$h.json" >"$dir/$h.log" 2>&1 &
	echo $! >"$dir/$h.pid"
	sleep 1
done

cat <<EOF2
Three members run (logs in $dir/h?.log). Point the CLI at any of them:

  export XENHA_SERVER=https://127.0.0.1:$(port 21) XENHA_CA=$dir/ca/ca.pem \\
         XENHA_CERT=$dir/ca/operators/admin/admin.pem XENHA_KEY=$dir/ca/operators/admin/admin.key
  $x status
  $x put-vm examples/xenha/testdata/web1.json --wait
  $x maintenance h2 on --wait
  kill -9 \$(cat $dir/h3.pid); $x hosts          # h3 turns suspect; its BMC does not answer
  $x fence h3 --wait                            # you confirm it is off: its VMs restart elsewhere
  $x incidents

Status page and metrics: http://127.0.0.1:$(port 31)/ and http://127.0.0.1:$(port 31)/metrics
Stop: $0 stop $dir
EOF2
