package iscsi_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
	"github.com/xenha/xenha/storage/iscsi"
)

// standIn plays iscsiadm and sg_persist for one simulated host, against a
// real tgtd, printing what those tools print. This kernel has no iSCSI
// initiator, so the host's "login" is a pure-Go Session with the host's own
// initiator name, and sg_persist's PR commands travel over it: the
// reservation semantics (who may write, what a preempt removes) are the
// target's, not the test's.
type standIn struct {
	host   string
	portal string

	mu       sync.Mutex
	sessions map[string]*iscsi.Session // by IQN
	devs     map[string]string         // "/dev/sdX" -> IQN
	next     byte
}

func newStandIn(host, portal string) *standIn {
	return &standIn{host: host, portal: portal, sessions: map[string]*iscsi.Session{}, devs: map[string]string{}, next: 'b'}
}

func (s *standIn) initiator() string { return "iqn.2026-11.test.xenha:" + s.host }

func (s *standIn) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for iqn, ss := range s.sessions {
		ss.Close(context.Background())
		delete(s.sessions, iqn)
	}
}

func exit(cmd run.Cmd, code int, stdout, stderr string) (run.Result, error) {
	res := run.Result{Stdout: []byte(stdout), Stderr: []byte(stderr), ExitCode: code}
	if code != 0 {
		return res, &run.ExitError{Cmd: cmd, ExitCode: code, Stderr: stderr}
	}
	return res, nil
}

func (s *standIn) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := strings.Join(cmd.Args, " ")
	switch {
	case cmd.Name == "iscsiadm" && strings.HasPrefix(a, "-m discovery -t sendtargets -p "):
		targets, err := iscsi.Discover(ctx, cmd.Args[len(cmd.Args)-1])
		if err != nil {
			return exit(cmd, 4, "", "iscsiadm: cannot make connection to "+s.portal+": Connection refused\n")
		}
		var out strings.Builder
		for _, t := range targets {
			fmt.Fprintf(&out, "%s,1 %s\n", s.portal, t.Name)
		}
		return exit(cmd, 0, out.String(), "")
	case cmd.Name == "iscsiadm" && strings.HasSuffix(a, "--login"):
		iqn := cmd.Args[3]
		if _, ok := s.sessions[iqn]; ok {
			return exit(cmd, 15, "", "iscsiadm: default: 1 session requested, but 1 already present.\n")
		}
		ss, err := iscsi.Login(ctx, s.portal, iqn, iscsi.WithInitiatorName(s.initiator()))
		if err != nil {
			return exit(cmd, 19, "", "iscsiadm: Could not login to [iface: default, target: "+iqn+"]: "+err.Error()+"\n")
		}
		s.sessions[iqn] = ss
		dev := "/dev/sd" + string(s.next)
		s.next++
		s.devs[dev] = iqn
		return exit(cmd, 0, fmt.Sprintf("Logging in to [iface: default, target: %s, portal: %s]\nLogin to [iface: default, target: %s, portal: %s] successful.\n", iqn, s.portal, iqn, s.portal), "")
	case cmd.Name == "iscsiadm" && strings.HasSuffix(a, "--logout"):
		iqn := cmd.Args[3]
		ss, ok := s.sessions[iqn]
		if !ok {
			return exit(cmd, 21, "", "iscsiadm: No matching sessions found\n")
		}
		ss.Close(ctx)
		delete(s.sessions, iqn)
		for d, q := range s.devs {
			if q == iqn {
				delete(s.devs, d)
			}
		}
		return exit(cmd, 0, "Logout of [sid: 1, target: "+iqn+", portal: "+s.portal+"] successful.\n", "")
	case cmd.Name == "iscsiadm" && a == "-m session -P 3":
		if len(s.sessions) == 0 {
			return exit(cmd, 21, "", "iscsiadm: No active sessions.\n")
		}
		var out strings.Builder
		out.WriteString("iSCSI Transport Class version 2.0-870\nversion 2.1.8\n")
		sid := 0
		for dev, iqn := range s.devs {
			sid++
			fmt.Fprintf(&out, "Target: %s (non-flash)\n\tCurrent Portal: %s,1\n\tPersistent Portal: %s,1\n", iqn, s.portal, s.portal)
			fmt.Fprintf(&out, "\t\tSID: %d\n\t\tiSCSI Connection State: LOGGED IN\n\t\tiSCSI Session State: LOGGED_IN\n", sid)
			fmt.Fprintf(&out, "\t\t************************\n\t\tAttached SCSI devices:\n\t\t************************\n")
			fmt.Fprintf(&out, "\t\tHost Number: %d\tState: running\n\t\tscsi%d Channel 00 Id 0 Lun: 0\n\t\tscsi%d Channel 00 Id 0 Lun: 1\n", sid, sid, sid)
			fmt.Fprintf(&out, "\t\t\tAttached scsi disk %s\t\tState: running\n", strings.TrimPrefix(dev, "/dev/"))
		}
		return exit(cmd, 0, out.String(), "")
	case cmd.Name == "sg_persist":
		return s.persist(ctx, cmd)
	}
	return exit(cmd, 1, "", "stand-in: unknown command "+cmd.String()+"\n")
}

// persist runs sg_persist's PR commands on the host's session for the device.
func (s *standIn) persist(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	args := cmd.Args
	dev := args[len(args)-1]
	ss, ok := s.sessions[s.devs[dev]]
	if !ok {
		return exit(cmd, 15, "", dev+": error opening file (ro): "+dev+": No such file or directory\n")
	}
	flag := func(name string) uint64 {
		for i, x := range args {
			if x == name && i+1 < len(args) {
				v, _ := strconv.ParseUint(strings.TrimPrefix(args[i+1], "0x"), 16, 64)
				return v
			}
		}
		return 0
	}
	var err error
	var name string
	switch strings.Join(args[:len(args)-1], " ") {
	case "-n -i -k":
		keys, err := ss.ReadKeys(ctx, 1)
		if err != nil {
			return exit(cmd, 99, "", err.Error()+"\n")
		}
		if len(keys) == 0 {
			return exit(cmd, 0, "  PR generation=0x1, there are NO registered reservation keys\n", "")
		}
		out := fmt.Sprintf("  PR generation=0x1, %d registered reservation keys follow:\n", len(keys))
		if len(keys) == 1 {
			out = "  PR generation=0x1, 1 registered reservation key follows:\n"
		}
		for _, k := range keys {
			out += fmt.Sprintf("    0x%x\n", k)
		}
		return exit(cmd, 0, out, "")
	case "-n -i -r":
		r, err := ss.ReadReservation(ctx, 1)
		if err != nil {
			return exit(cmd, 99, "", err.Error()+"\n")
		}
		if r == nil {
			return exit(cmd, 0, "  PR generation=0x1, there is NO reservation held\n", "")
		}
		return exit(cmd, 0, fmt.Sprintf("  PR generation=0x1, Reservation follows:\n    Key=0x%x\n      scope: LU_SCOPE,  type: Write Exclusive, registrants only\n", r.Key), "")
	}
	switch {
	case args[2] == "-I":
		name, err = "Register and ignore existing key", ss.Register(ctx, 1, flag("-S"))
	case args[2] == "-R":
		name, err = "Reserve", ss.Reserve(ctx, 1, flag("-K"), iscsi.WriteExclusiveRegistrantsOnly)
	case args[2] == "-A":
		name, err = "Preempt and abort", ss.PreemptAbort(ctx, 1, flag("-K"), flag("-S"), iscsi.WriteExclusiveRegistrantsOnly)
	case args[2] == "-P":
		name, err = "Preempt", ss.Preempt(ctx, 1, flag("-K"), flag("-S"), iscsi.WriteExclusiveRegistrantsOnly)
	case args[2] == "-G":
		name, err = "Register", ss.Unregister(ctx, 1, flag("-K"))
	default:
		return exit(cmd, 1, "", "stand-in: unknown sg_persist form "+cmd.String()+"\n")
	}
	var se *iscsi.SCSIError
	switch {
	case err == nil:
		return exit(cmd, 0, "", "")
	case errors.Is(err, storage.ErrInUse):
		return exit(cmd, 24, "", "PR out ("+name+"): Reservation conflict\n")
	case errors.As(err, &se) && se.Key == 5:
		return exit(cmd, 5, "", "PR out ("+name+"): bad field in cdb or parameter list (perhaps unsupported service action)\n")
	}
	return exit(cmd, 99, "", err.Error()+"\n")
}

// write writes one block to the host's device for vol, as the VM would.
func (s *standIn) write(ctx context.Context, iqn string) error {
	s.mu.Lock()
	ss, ok := s.sessions[iqn]
	s.mu.Unlock()
	if !ok {
		return errors.New("not logged in")
	}
	return ss.Write(ctx, 1, 0, 512, make([]byte, 512))
}
