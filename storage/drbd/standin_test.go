package drbd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
)

// rig is a pair of simulated hosts for one DRBD resource, vm-disk1: real
// drbdadm with a config in a temporary directory, and per host a stand-in
// drbdsetup (a shell script written here) that records its argv and prints
// the status sample status-json-healthy-2node.json with the roles and states
// of the shared state directory filled in.
type rig struct {
	dir    string
	config string
}

// standIn is the stand-in drbdsetup. State files in $S: role.<host>
// (Primary, Secondary, or Down for a fenced host), outdated.<host> (the
// fence-peer handler outdated it), open.<host> (device held open),
// refuse.<host> (the kernel refuses promotion though status showed no
// Primary peer: a race), sample (print this file as status instead),
// events.<host> (events2 output).
const standIn = `#!/bin/sh
S=%q
ME=%q
PEER=%q
echo "$*" >> "$S/argv.$ME"
res=$2
case "$1" in
status)
	if [ "$res" != vm-disk1 ]; then echo "$res: No such resource" >&2; exit 10; fi
	if [ -f "$S/sample" ]; then cat "$(cat "$S/sample")"; exit 0; fi
	role=$(cat "$S/role.$ME"); prole=$(cat "$S/role.$PEER")
	[ "$role" = Down ] && role=Secondary
	conn=Connected; pdisk=UpToDate
	if [ "$prole" = Down ]; then
		conn=Connecting; prole=Unknown; pdisk=DUnknown
		[ -f "$S/outdated.$PEER" ] && pdisk=Outdated
	fi
	sed -e "s/@ROLE@/$role/" -e "s/@PEER_ROLE@/$prole/" -e "s/@CONN@/$conn/" \
		-e "s/@PEER_DISK@/$pdisk/" -e "s/@PEER@/$PEER/" "$S/status.tmpl"
	;;
primary)
	if [ "$(cat "$S/role.$PEER")" = Primary ] || [ -f "$S/refuse.$ME" ]; then
		echo "$res: State change failed: (-1) Multiple primaries not allowed by config" >&2; exit 11
	fi
	echo Primary > "$S/role.$ME"
	;;
secondary)
	if [ -f "$S/open.$ME" ]; then
		echo "$res: State change failed: (-12) Device is held open by someone" >&2; exit 11
	fi
	echo Secondary > "$S/role.$ME"
	;;
events2)
	cat "$S/events.$ME" 2>/dev/null
	;;
*)
	echo "stand-in drbdsetup: unexpected: $*" >&2; exit 20
	;;
esac
`

func newRig(t *testing.T) *rig {
	t.Helper()
	testenv.NeedBinary(t, "drbdadm")
	testenv.NeedBinary(t, "sh")
	r := &rig{dir: t.TempDir()}
	node, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// drbdadm picks the "on" section by node name; node-b is the peer.
	conf := fmt.Sprintf(`resource vm-disk1 {
	device /dev/drbd1000;
	disk /dev/xenha-test-no-such-disk;
	meta-disk internal;
	on %s {
		node-id 0;
		address 127.0.0.1:7789;
	}
	on node-b {
		node-id 1;
		address 127.0.0.2:7789;
	}
	connection-mesh {
		hosts %s node-b;
	}
}
`, node, node)
	r.config = filepath.Join(r.dir, "drbd.conf")
	r.write(t, "drbd.conf", conf)
	tmpl, err := os.ReadFile("testdata/samples/status-json-healthy-2node.json")
	if err != nil {
		t.Fatal(err)
	}
	s := string(tmpl)
	for old, placeholder := range map[string]string{
		`"role": "Primary"`: `"role": "@ROLE@"`, `"peer-role": "Secondary"`: `"peer-role": "@PEER_ROLE@"`,
		`"connection-state": "Connected"`: `"connection-state": "@CONN@"`, `"peer-disk-state": "UpToDate"`: `"peer-disk-state": "@PEER_DISK@"`,
		`"name": "node-b"`: `"name": "@PEER@"`,
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("status sample lacks %s", old)
		}
		s = strings.Replace(s, old, placeholder, 1)
	}
	r.write(t, "status.tmpl", s)
	for _, h := range [][2]string{{"node-a", "node-b"}, {"node-b", "node-a"}} {
		r.write(t, "drbdsetup-"+h[0], fmt.Sprintf(standIn, r.dir, h[0], h[1]))
		os.Chmod(r.drbdsetup(h[0]), 0o755)
		r.set(t, "role."+h[0], "Secondary")
	}
	return r
}

func (r *rig) drbdsetup(host string) string { return filepath.Join(r.dir, "drbdsetup-"+host) }

func (r *rig) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) set(t *testing.T, name, value string) { r.write(t, name, value+"\n") }

func (r *rig) get(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// argv returns the drbdsetup calls host's stand-in received.
func (r *rig) argv(t *testing.T, host string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "argv."+host))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (r *rig) backend(host string) *Backend {
	return New(WithHostName(host), WithConfig(r.config), WithDrbdsetup(r.drbdsetup(host)))
}
