package hostd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/agent"
	"github.com/xenha/xenha/fence/ipmi"
	fencelibvirt "github.com/xenha/xenha/fence/libvirt"
	"github.com/xenha/xenha/fence/sbd"
	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/xenctl/libvirt"
)

// FenceLevel is one rung of a host's fencing chain. Method picks which of
// the other fields apply.
type FenceLevel struct {
	// Method is "ipmi", "sbd", "agent", "libvirt" or "watchdog".
	Method string `json:"method"`
	// Timeout bounds the level ("30s" if omitted).
	Timeout Duration `json:"timeout,omitempty"`

	// IPMI target (method "ipmi").
	Address      string `json:"address,omitempty"`
	Port         int    `json:"port,omitempty"`
	User         string `json:"user,omitempty"`
	Interface    string `json:"interface,omitempty"` // "lanplus" (default) or "lan"
	PasswordFile string `json:"password_file,omitempty"`

	// Devices are the shared SBD devices holding the host's slot (method
	// "sbd"; the host's own sbd watcher reads the same ones).
	Devices []string `json:"devices,omitempty"`

	// Agent is a ClusterLabs fence agent, by name in PATH or absolute path
	// (method "agent"), with its stdin options (no action, no password:
	// password_file is read at each run).
	Agent   string            `json:"agent,omitempty"`
	Options map[string]string `json:"options,omitempty"`

	// URI is the outer hypervisor whose domain Domain is the host (method
	// "libvirt": a host that is itself a VM); Transient says the domain
	// vanishes once destroyed.
	URI       string `json:"uri,omitempty"`
	Domain    string `json:"domain,omitempty"`
	Transient bool   `json:"transient,omitempty"`

	// WatchdogTimeout is the host's hardware watchdog timeout (method
	// "watchdog": the host counts as reset once its lease and this have run
	// out since the last renewal this member applied).
	WatchdogTimeout Duration `json:"watchdog_timeout,omitempty"`
}

// Fence methods the daemon can configure.
var fenceMethods = map[string]bool{"ipmi": true, "sbd": true, "agent": true, "libvirt": true, "watchdog": true}

// knownStorage are the storage kinds the daemon can attach.
var knownStorage = map[string]bool{"iscsi": true, "nfs": true, "nbd": true, "drbd": true}

// problems lists what is wrong with the level, each naming field.X.
func (l FenceLevel) problems(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) { errs = append(errs, bad(field+sub, format, args...)) }
	switch l.Method {
	case "ipmi":
		errs = append(errs, l.ipmiProblems(field)...)
	case "sbd":
		if len(l.Devices) == 0 {
			add(".devices", "missing: the shared block devices holding the host's SBD slot")
		}
	case "agent":
		if l.Agent == "" {
			add(".agent", "missing: a fence agent such as \"fence_ipmilan\"")
		}
		if _, ok := l.Options["password"]; ok {
			add(".options.password", "passwords are read from password_file, never from this configuration")
		}
	case "libvirt":
		if l.URI == "" {
			add(".uri", "missing: the libvirt URI of the hypervisor that runs the host as a domain")
		}
		if l.Domain == "" {
			add(".domain", "missing: the host's domain name on that hypervisor")
		}
	case "watchdog":
		if l.WatchdogTimeout <= 0 {
			add(".watchdog_timeout", "missing: the host's hardware watchdog timeout, e.g. \"10s\"")
		}
	case "":
		add(".method", "missing: use \"ipmi\", \"sbd\", \"agent\", \"libvirt\" or \"watchdog\"")
	default:
		add(".method", "%q is not supported: use \"ipmi\", \"sbd\", \"agent\", \"libvirt\" or \"watchdog\"", l.Method)
	}
	return errs
}

func (l FenceLevel) ipmiProblems(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) { errs = append(errs, bad(field+sub, format, args...)) }
	if l.Address == "" {
		add(".address", "missing: the BMC's address")
	}
	if l.User == "" {
		add(".user", "missing: a BMC user with operator or administrator privilege")
	}
	if l.PasswordFile == "" {
		add(".password_file", "missing: passwords are read from a file, never from this configuration")
	}
	if l.Port < 0 || l.Port > 65535 {
		add(".port", "%d is not a UDP port", l.Port)
	}
	if l.Interface != "" && l.Interface != "lanplus" && l.Interface != "lan" {
		add(".interface", "%q: use \"lanplus\" or \"lan\"", l.Interface)
	}
	return errs
}

// reach checks, without fencing anything, that the level's device can be
// reached from here: the BMC's address resolves, the password file and SBD
// devices are readable, the agent is installed. Libvirt targets are opened
// only when the daemon runs.
func (l FenceLevel) reach(field string) []error {
	var errs []error
	readable := func(sub, path string) {
		if f, err := os.Open(path); err != nil {
			errs = append(errs, bad(field+sub, "%v", err))
		} else {
			f.Close()
		}
	}
	switch l.Method {
	case "ipmi":
		if _, err := net.LookupHost(l.Address); err != nil {
			errs = append(errs, bad(field+".address", "%q does not resolve: %v", l.Address, err))
		}
		readable(".password_file", l.PasswordFile)
	case "sbd":
		for i, d := range l.Devices {
			readable(fmt.Sprintf(".devices[%d]", i), d)
		}
	case "agent":
		if _, err := exec.LookPath(l.Agent); err != nil {
			errs = append(errs, bad(field+".agent", "%v: install fence-agents, or give the agent's absolute path", err))
		}
		if l.PasswordFile != "" {
			readable(".password_file", l.PasswordFile)
		}
	}
	return errs
}

// Check lists every problem -check reports, one per field: what Decode
// refuses, a member that could lead with no way to fence the pool's VM
// hosts, and fence devices that cannot be reached from here. It starts
// nothing and fences nothing.
func (f *File) Check() []error {
	errs := f.problems()
	role, _ := parseRole(f.Role)
	policy, _ := parseFencePolicy(f.FencePolicy)
	if len(f.Fence) == 0 && policy == ha.RequireFence {
		what := "this host runs VMs"
		if role == ha.RoleWitness {
			what = "this witness votes"
		}
		errs = append(errs, bad("fence", "missing: %s and may lead, and a leader must fence a failed VM host before recovering its VMs; give each other host's levels (ipmi, sbd, agent, libvirt, watchdog)", what))
	}
	if err := f.timings(role); err != nil {
		errs = append(errs, err)
	}
	return append(errs, f.Reachability()...)
}

// timingFields maps ha.Config's timing fields to the file's keys.
var timingFields = map[string]string{
	"KeepAlive": "timings.keepalive", "WarnTime": "timings.warntime", "DeadTime": "timings.deadtime",
	"InitDead": "timings.initdead", "Lease": "timings.lease", "ReassignAfter": "timings.reassign_after",
	"WatchdogTimeout": "timings.watchdog_timeout",
}

// timings checks the profile and timings against ha.Config.Validate's
// relations (DeadTime against KeepAlive, Lease against ReassignAfter, ...)
// without opening anything, and names the file's key.
func (f *File) timings(role ha.Role) error {
	cfg, err := profile(f.Profile)
	if err != nil {
		return nil // reported as profile already
	}
	applyTimings(&cfg, f.Timings)
	cfg.ID, cfg.ClusterID, cfg.BindAddr, cfg.Role = "check", "check", "127.0.0.1:0", role
	cfg.Insecure, cfg.InmemStore, cfg.JoinToken = true, true, "check"
	cfg.FencePolicy, _ = parseFencePolicy(f.FencePolicy)
	cfg.WatchdogTimeout = f.watchdogTimeout()
	var ce *ha.ConfigError
	if err := cfg.Validate(); errors.As(err, &ce) {
		if key, ok := timingFields[ce.Field]; ok {
			return bad(key, "%s", ce.Msg)
		}
	}
	return nil
}

// Reachability lists the fence devices of f that cannot be reached from this
// host (see FenceLevel.reach), for -check.
func (f *File) Reachability() []error {
	var errs []error
	for _, h := range sortedHosts(f.Fence) {
		for i, l := range f.Fence[h] {
			errs = append(errs, l.reach(fmt.Sprintf("fence.%s[%d]", h, i))...)
		}
	}
	return errs
}

func sortedHosts(m map[string][]FenceLevel) []string {
	hosts := make([]string, 0, len(m))
	for h := range m {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

// fencerSet builds the fencers of one configuration and closes what they
// opened.
type fencerSet struct {
	log      *slog.Logger
	self     string
	lease    time.Duration
	renewals *renewals
	closers  []func()
}

// level returns the fencer for one host's level.
func (s *fencerSet) level(ctx context.Context, host string, l FenceLevel) (fence.Fencer, error) {
	switch l.Method {
	case "ipmi":
		iface := ipmi.Lanplus
		if l.Interface == "lan" {
			iface = ipmi.Lan
		}
		return ipmi.New(map[string]ipmi.Target{host: {Address: l.Address, Port: l.Port, User: l.User,
			Interface: iface, PasswordFile: l.PasswordFile}}, ipmi.WithLogger(s.log))
	case "sbd":
		return sbd.New(s.self, map[string][]string{host: l.Devices}, sbd.WithLogger(s.log))
	case "agent":
		return agent.New(map[string]agent.Target{host: {Agent: l.Agent, Options: l.Options, PasswordFile: l.PasswordFile}},
			agent.WithLogger(s.log))
	case "libvirt":
		h, err := libvirt.Open(ctx, l.URI, libvirt.WithLogger(s.log))
		if err != nil {
			return nil, fmt.Errorf("outer hypervisor %s: %w", l.URI, err)
		}
		s.closers = append(s.closers, func() { h.Close() })
		return fencelibvirt.New(map[string]fencelibvirt.Target{host: {Hypervisor: h, Domain: l.Domain, Label: l.URI, Transient: l.Transient}})
	case "watchdog":
		return watchdog.NewFencer(s.renewals.last, s.lease, time.Duration(l.WatchdogTimeout))
	}
	return nil, fmt.Errorf("method %q is not supported", l.Method)
}

func (s *fencerSet) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// renewals remembers, on this member's clock, when it last applied a lease
// renewal of each host, which the watchdog fencer counts from. Times before
// this member's own election are raised to it: a new leader does not know
// what its predecessor applied.
type renewals struct {
	mu      sync.Mutex
	sent    map[string]time.Time // Host.LeaseSent last seen
	applied map[string]time.Time
	elected time.Time
}

func newRenewals() *renewals {
	return &renewals{sent: map[string]time.Time{}, applied: map[string]time.Time{}}
}

// follow records renewals from c's events until ctx ends.
func (r *renewals) follow(ctx context.Context, c *ha.Cluster) {
	for ev := range c.Subscribe(ctx) {
		switch {
		case ev.Kind == ha.EventLeaderElected:
			r.mu.Lock()
			r.elected = ev.Time
			r.mu.Unlock()
		case ev.Kind == ha.EventApplied && ev.Message == "lease.renew":
			st, err := c.State(ctx, ha.Stale)
			if err != nil {
				continue
			}
			r.mu.Lock()
			for id, h := range st.Hosts {
				if !h.LeaseSent.Equal(r.sent[id]) {
					r.sent[id], r.applied[id] = h.LeaseSent, ev.Time
				}
			}
			r.mu.Unlock()
		}
	}
}

func (r *renewals) last(_ context.Context, host string) (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.applied[host]
	if !ok {
		if r.elected.IsZero() {
			return time.Time{}, fmt.Errorf("hostd: no renewal of %s applied here: %w", host, fence.ErrUnknownHost)
		}
		t = r.elected
	}
	if t.Before(r.elected) {
		t = r.elected
	}
	return t, nil
}
