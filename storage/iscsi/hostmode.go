package iscsi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
)

// iscsiadm exit statuses (open-iscsi's iscsi_err.h) the backend tells apart.
const (
	iscsiadmErrTrans        = 4  // ISCSI_ERR_TRANS: connecting to the portal failed
	iscsiadmErrTransTimeout = 8  // ISCSI_ERR_TRANS_TIMEOUT
	iscsiadmErrTransport    = 12 // ISCSI_ERR_TRANS_NOT_FOUND: no iscsi_tcp module
	iscsiadmErrSessExists   = 15 // ISCSI_ERR_SESS_EXISTS
	iscsiadmErrFatalLogin   = 19 // ISCSI_ERR_FATAL_LOGIN: target refused (not found, not allowed)
	iscsiadmErrNoObjs       = 21 // ISCSI_ERR_NO_OBJS_FOUND
	iscsiadmErrLoginAuth    = 24 // ISCSI_ERR_LOGIN_AUTH_FAILED
)

// sg_persist exit statuses (sg3_utils(8)).
const (
	sgIllegalRequest = 5  // e.g. a service action the target does not implement
	sgResConflict    = 24 // SCSI RESERVATION CONFLICT
)

// PR type 5: Write Exclusive, Registrants Only. Registered hosts may write,
// so the fencing works by controlling who is registered: only the holder of
// the newest generation is.
const prTypeWERO = "5"

func (b *Backend) runTool(ctx context.Context, name string, args ...string) (run.Result, error) {
	return b.runner.Run(ctx, run.Command(name, args...))
}

func exitCode(err error) int {
	var xe *run.ExitError
	if errors.As(err, &xe) {
		return xe.ExitCode
	}
	return -1
}

// attachHost logs in and takes the reservation:
//
//	iscsiadm -m discovery -t sendtargets -p PORTAL     (is the IQN offered?)
//	iscsiadm -m node -T IQN -p PORTAL --login          (15 = already logged in)
//	iscsiadm -m session -P 3                           (find /dev/sdX of the LUN)
//	sg_persist ...                                     (takeOver, see sgPersist)
func (b *Backend) attachHost(ctx context.Context, vol storage.Volume, t target) (storage.Source, error) {
	if err := checkGeneration(nil, nil, vol.Generation); err != nil {
		return storage.Source{}, err
	}
	res, err := b.runTool(ctx, "iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", t.portal)
	if err != nil {
		return storage.Source{}, &opError{"discovery", b.iscsiadmErr(t, "discovery", err)}
	}
	found, err := parseDiscovery(string(res.Stdout))
	if err != nil {
		return storage.Source{}, &opError{"discovery", err}
	}
	if !found[t.iqn] {
		return storage.Source{}, &opError{"discovery", fmt.Errorf("portal %s does not offer target %s: %w", t.portal, t.iqn, storage.ErrNotFound)}
	}
	if _, err := b.runTool(ctx, "iscsiadm", "-m", "node", "-T", t.iqn, "-p", t.portal, "--login"); err != nil && exitCode(err) != iscsiadmErrSessExists {
		return storage.Source{}, &opError{"login", b.iscsiadmErr(t, "login", err)}
	}
	dev, err := b.waitDevice(ctx, t)
	if err != nil {
		return storage.Source{}, &opError{"login", err}
	}
	if err := b.reserve(ctx, dev, vol.Generation); err != nil {
		return storage.Source{}, &opError{"reserve", err}
	}
	return storage.Source{Type: storage.SourceBlock, Path: dev}, nil
}

func (b *Backend) iscsiadmErr(t target, step string, err error) error {
	switch code := exitCode(err); code {
	case iscsiadmErrTransport:
		return fmt.Errorf("iscsiadm %s of %s: the iscsi_tcp kernel module is missing; load it or use NetworkDisk mode: %w", step, t.portal, err)
	case iscsiadmErrNoObjs, iscsiadmErrFatalLogin:
		return fmt.Errorf("iscsiadm %s of %s on %s: %w (%v)", step, t.iqn, t.portal, storage.ErrNotFound, err)
	case iscsiadmErrTrans, iscsiadmErrTransTimeout:
		return fmt.Errorf("iscsiadm %s of %s on %s: %w (%v)", step, t.iqn, t.portal, storage.ErrUnreachable, err)
	case iscsiadmErrLoginAuth:
		return fmt.Errorf("iscsiadm %s of %s on %s: authentication failed; check the node's CHAP settings: %w", step, t.iqn, t.portal, err)
	}
	return fmt.Errorf("iscsiadm %s of %s on %s: %w", step, t.iqn, t.portal, err)
}

// waitDevice polls the session list until the kernel has attached the LUN's
// disk: the SCSI scan after login is asynchronous.
func (b *Backend) waitDevice(ctx context.Context, t target) (string, error) {
	deadline := time.Now().Add(b.deviceWait)
	for {
		res, err := b.runTool(ctx, "iscsiadm", "-m", "session", "-P", "3")
		if err != nil && exitCode(err) != iscsiadmErrNoObjs {
			return "", fmt.Errorf("list sessions: %w", err)
		}
		sessions, perr := parseSessions(string(res.Stdout))
		if perr != nil {
			return "", perr
		}
		if dev := findDevice(sessions, t); dev != "" {
			return "/dev/" + dev, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("logged in to %s on %s but LUN %d has no disk after %v; check the LUN number and 'iscsiadm -m session -P 3': %w", t.iqn, t.portal, t.lun, b.deviceWait, storage.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reserve runs takeOver with sg_persist on dev.
func (b *Backend) reserve(ctx context.Context, dev string, gen uint64) error {
	if err := takeOver(ctx, sgPersist{b, dev}, gen); err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	return nil
}

// sgPersist is a disk's reservations through sg_persist:
//
//	sg_persist -n -i -k DEV; sg_persist -n -i -r DEV   keys, holder
//	sg_persist -n -o -I -S GEN DEV                     register key = generation
//	sg_persist -n -o -R -K GEN -T 5 DEV                reserve
//	sg_persist -n -o -A -K GEN -S OLD -T 5 DEV         preempt and abort (-P if unsupported)
//	sg_persist -n -o -G -K GEN -S 0 DEV                unregister
type sgPersist struct {
	b   *Backend
	dev string
}

func (p sgPersist) state(ctx context.Context) ([]uint64, *uint64, error) {
	return p.b.readReservation(ctx, p.dev)
}

func (p sgPersist) out(ctx context.Context, step string, args ...string) error {
	_, err := p.b.runTool(ctx, "sg_persist", append(append([]string{"-n", "-o"}, args...), p.dev)...)
	if err != nil {
		return p.b.prErr(p.dev, step, err)
	}
	return nil
}

func (p sgPersist) register(ctx context.Context, key uint64) error {
	return p.out(ctx, "register", "-I", "-S", hexKey(key))
}

func (p sgPersist) reserve(ctx context.Context, key uint64) error {
	return p.out(ctx, "reserve", "-R", "-K", hexKey(key), "-T", prTypeWERO)
}

func (p sgPersist) preempt(ctx context.Context, key, victim uint64) error {
	_, err := p.b.runTool(ctx, "sg_persist", "-n", "-o", "-A", "-K", hexKey(key), "-S", hexKey(victim), "-T", prTypeWERO, p.dev)
	if err != nil && exitCode(err) == sgIllegalRequest {
		// No PREEMPT AND ABORT on this target: plain PREEMPT still removes
		// the old key; see Session.preempt.
		p.b.log.LogAttrs(ctx, slog.LevelWarn, "target lacks PREEMPT AND ABORT; using PREEMPT", slog.String("device", p.dev))
		return p.out(ctx, "preempt", "-P", "-K", hexKey(key), "-S", hexKey(victim), "-T", prTypeWERO)
	}
	if err != nil {
		return p.b.prErr(p.dev, "preempt", err)
	}
	return nil
}

func (p sgPersist) unregister(ctx context.Context, key uint64) error {
	return p.out(ctx, "unregister", "-G", "-K", hexKey(key), "-S", "0")
}

// confirmHeld checks that this host's key still holds dev's reservation.
// A newer key means this host was fenced: storage.ErrStaleGeneration.
func (b *Backend) confirmHeld(ctx context.Context, dev string, gen uint64) error {
	keys, holder, err := b.readReservation(ctx, dev)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k > gen {
			return fmt.Errorf("%s: key 0x%x (a newer generation) preempted this host's %d: %w", dev, k, gen, storage.ErrStaleGeneration)
		}
	}
	if holder != nil && *holder > gen {
		return fmt.Errorf("%s: reservation held by key 0x%x (a newer generation), this host has %d: %w", dev, *holder, gen, storage.ErrStaleGeneration)
	}
	if holder == nil || *holder != gen || !slices.Contains(keys, gen) {
		return fmt.Errorf("%s: this host's key 0x%x no longer holds the reservation (cleared by an operator?); detach and attach again: %w", dev, gen, storage.ErrStaleGeneration)
	}
	return nil
}

func (b *Backend) readReservation(ctx context.Context, dev string) ([]uint64, *uint64, error) {
	res, err := b.runTool(ctx, "sg_persist", "-n", "-i", "-k", dev)
	if err != nil {
		return nil, nil, b.prErr(dev, "read keys", err)
	}
	keys, err := parseKeys(string(res.Stdout))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dev, err)
	}
	res, err = b.runTool(ctx, "sg_persist", "-n", "-i", "-r", dev)
	if err != nil {
		return nil, nil, b.prErr(dev, "read reservation", err)
	}
	holder, err := parseReservation(string(res.Stdout))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dev, err)
	}
	return keys, holder, nil
}

func (b *Backend) prErr(dev, step string, err error) error {
	if exitCode(err) == sgResConflict {
		return fmt.Errorf("persistent reservation %s on %s: reservation conflict; a newer generation preempted this host: %w (%v)", step, dev, storage.ErrStaleGeneration, err)
	}
	return fmt.Errorf("persistent reservation %s on %s: %w; the target may not support SCSI-3 reservations", step, dev, err)
}

func hexKey(k uint64) string { return "0x" + strconv.FormatUint(k, 16) }

// detachHost drops this host's key, the generation gen it attached dev at
// (which releases its reservation), and logs out. A conflict means another host already preempted this one, and
// "no matching sessions" that it was logged out: both are the goal.
func (b *Backend) detachHost(ctx context.Context, t target, dev string, gen uint64) error {
	if dev != "" {
		_, err := b.runTool(ctx, "sg_persist", "-n", "-o", "-G", "-K", hexKey(gen), "-S", "0", dev)
		if err != nil && exitCode(err) != sgResConflict {
			return &opError{"release", b.prErr(dev, "unregister", err)}
		}
	}
	if _, err := b.runTool(ctx, "iscsiadm", "-m", "node", "-T", t.iqn, "-p", t.portal, "--logout"); err != nil && exitCode(err) != iscsiadmErrNoObjs {
		return &opError{"logout", b.iscsiadmErr(t, "logout", err)}
	}
	return nil
}

// parseDiscovery reads `iscsiadm -m discovery -t sendtargets` output, one
// "ADDRESS:PORT,TPGT IQN" line per portal and target.
func parseDiscovery(out string) (map[string]bool, error) {
	found := map[string]bool{}
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !strings.Contains(f[0], ",") {
			return nil, fmt.Errorf("iscsiadm discovery output line %d %q is not \"portal,tpgt iqn\"; is this open-iscsi?", i+1, truncate(line, 80))
		}
		found[f[1]] = true
	}
	return found, nil
}

// listedSession is one iSCSI session as `iscsiadm -m session -P 3` prints it.
type listedSession struct {
	Target string
	// Portal is the current portal, "address:port" without the TPGT.
	Portal string
	SID    int
	State  string
	// Disks maps LUN numbers to kernel disk names ("sdb").
	Disks map[int]string
}

// parseSessions reads `iscsiadm -m session -P 3`. It follows the structure
// of the print level 3 listing: "Target:" starts a target, "Current Portal:"
// and "SID:" start a session, "scsiH Channel C Id I Lun: L" names a LUN and
// the "Attached scsi disk" line after it its disk.
func parseSessions(out string) ([]listedSession, error) {
	var sessions []listedSession
	var target string
	lun := -1
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		cur := func() *listedSession {
			if len(sessions) == 0 {
				return nil
			}
			return &sessions[len(sessions)-1]
		}
		switch {
		case strings.HasPrefix(line, "Target: "):
			target = strings.Fields(strings.TrimPrefix(line, "Target: "))[0]
		case strings.HasPrefix(line, "Current Portal: "):
			if target == "" {
				return nil, fmt.Errorf("iscsiadm session listing line %d: portal before any Target line", n)
			}
			p := strings.TrimPrefix(line, "Current Portal: ")
			if i := strings.LastIndexByte(p, ','); i >= 0 {
				p = p[:i]
			}
			sessions = append(sessions, listedSession{Target: target, Portal: p, Disks: map[int]string{}})
			lun = -1
		case strings.HasPrefix(line, "SID: "):
			if s := cur(); s != nil {
				s.SID, _ = strconv.Atoi(strings.TrimPrefix(line, "SID: "))
			}
		case strings.HasPrefix(line, "iSCSI Session State: "):
			if s := cur(); s != nil {
				s.State = strings.TrimPrefix(line, "iSCSI Session State: ")
			}
		case strings.HasPrefix(line, "scsi") && strings.Contains(line, " Lun: "):
			v := line[strings.LastIndex(line, " Lun: ")+6:]
			l, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("iscsiadm session listing line %d: bad LUN in %q", n, line)
			}
			lun = l
		case strings.HasPrefix(line, "Attached scsi disk "):
			f := strings.Fields(strings.TrimPrefix(line, "Attached scsi disk "))
			s := cur()
			if s == nil || lun < 0 || len(f) == 0 {
				return nil, fmt.Errorf("iscsiadm session listing line %d: disk %q outside a session's LUN", n, line)
			}
			if strings.ContainsAny(f[0], "/.") {
				return nil, fmt.Errorf("iscsiadm session listing line %d: odd disk name %q", n, f[0])
			}
			s.Disks[lun] = f[0]
		}
	}
	return sessions, sc.Err()
}

// findDevice returns the disk name of t's LUN in a logged-in session.
func findDevice(sessions []listedSession, t target) string {
	for _, s := range sessions {
		if s.Target == t.iqn && s.Portal == t.portal && (s.State == "" || s.State == "LOGGED_IN") {
			if d := s.Disks[t.lun]; d != "" {
				return d
			}
		}
	}
	return ""
}

// parseKeys reads `sg_persist -n -i -k`:
//
//	PR generation=0x4, 2 registered reservation keys follow:
//	  0x3
//	  0x4
func parseKeys(out string) ([]uint64, error) {
	lines := nonEmptyLines(out)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "PR generation=") {
		return nil, fmt.Errorf("sg_persist read keys: unexpected output %q", truncate(out, 120))
	}
	if strings.Contains(lines[0], "there are NO registered reservation keys") {
		return nil, nil
	}
	var keys []uint64
	for _, l := range lines[1:] {
		k, err := strconv.ParseUint(strings.TrimPrefix(l, "0x"), 16, 64)
		if err != nil || !strings.HasPrefix(l, "0x") {
			return nil, fmt.Errorf("sg_persist read keys: %q is not a key", l)
		}
		keys = append(keys, k)
	}
	if !strings.Contains(lines[0], "follow") || len(keys) == 0 {
		return nil, fmt.Errorf("sg_persist read keys: unexpected output %q", truncate(out, 120))
	}
	return keys, nil
}

// parseReservation reads `sg_persist -n -i -r`; nil means none is held.
//
//	PR generation=0x4, Reservation follows:
//	  Key=0x4
//	    scope: LU_SCOPE,  type: Write Exclusive, registrants only
func parseReservation(out string) (*uint64, error) {
	lines := nonEmptyLines(out)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "PR generation=") {
		return nil, fmt.Errorf("sg_persist read reservation: unexpected output %q", truncate(out, 120))
	}
	if strings.Contains(lines[0], "there is NO reservation held") {
		return nil, nil
	}
	if len(lines) < 2 || !strings.Contains(lines[0], "Reservation follows") || !strings.HasPrefix(lines[1], "Key=0x") {
		return nil, fmt.Errorf("sg_persist read reservation: unexpected output %q", truncate(out, 120))
	}
	k, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "Key=0x"), 16, 64)
	if err != nil {
		return nil, fmt.Errorf("sg_persist read reservation: bad key in %q", lines[1])
	}
	return &k, nil
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
