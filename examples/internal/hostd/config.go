package hostd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/xenha/xenha/ha"
)

// ErrConfig is wrapped by every error about the configuration file.
var ErrConfig = errors.New("daemon: bad configuration")

// maxConfigSize bounds the file: a host's configuration is a few KiB.
const maxConfigSize = 1 << 20

// File is the daemon's configuration file (JSON). Secrets are never in it:
// the join token, TLS key and BMC passwords are named by file.
type File struct {
	// ID is this host's member ID (lower-case letters, digits, hyphens).
	ID string `json:"id"`
	// ClusterID names the pool.
	ClusterID string `json:"cluster_id"`
	// DataDir holds the Raft log and snapshots.
	DataDir string `json:"data_dir"`
	// Bind is the address members reach this host on, e.g. "198.18.0.1:7946".
	Bind string `json:"bind"`
	// Advertise is the address to announce when Bind is a wildcard.
	Advertise string `json:"advertise,omitempty"`
	// Role is "voter" (default), "nonvoter" or "witness".
	Role string `json:"role,omitempty"`
	// Bootstrap forms a new pool with this host as its first member. Set it
	// on one host, once; the others Join.
	Bootstrap bool `json:"bootstrap,omitempty"`
	// Join lists members to join through, when the data directory is empty.
	Join []string `json:"join,omitempty"`
	// JoinTokenFile holds the pool's shared join token.
	JoinTokenFile string `json:"join_token_file"`
	// TLS names the PEM files of the member's mutual-TLS identity.
	TLS TLSFiles `json:"tls"`
	// Profile is "default" or "fastlan" (ha.DefaultConfig, ha.FastLAN).
	Profile string `json:"profile,omitempty"`
	// Timings override the profile's failure-handling timings.
	Timings Timings `json:"timings,omitempty"`
	// Hypervisor is the libvirt URI of this host, e.g. "xen:///system".
	// Required unless Role is "witness".
	Hypervisor string `json:"hypervisor,omitempty"`
	// Fence maps every other host's ID to its fencing levels, tried in order.
	Fence map[string][]FenceLevel `json:"fence,omitempty"`
	// Netguard configures the nftables guard; omitted on a witness.
	Netguard *Netguard `json:"netguard,omitempty"`
	// Storage lists the volume kinds this host attaches: "iscsi", "nfs",
	// "nbd", "drbd".
	Storage []string `json:"storage,omitempty"`
	// FencePolicy is "require-fence" (default: a silent host's VMs move only
	// after a fence level proved it off) or "allow-lease-expiry" (silence
	// past lease + timings.watchdog_timeout also counts, because every VM
	// host's watchdog resets it by then). Give every member, witness
	// included, the same policy and timings: whichever leads judges.
	// allow-lease-expiry needs Watchdog on every host that runs VMs.
	FencePolicy string `json:"fence_policy,omitempty"`
	// Watchdog is this host's hardware watchdog, fed while the host holds
	// its lease (see fence/watchdog). Not on a witness. The daemon opens
	// (arms) it as it starts, before it holds a lease: a daemon restarted
	// after a crash may find its VMs still running, and must reset the host
	// unless it gets its lease back within the timeout. It disarms the
	// device only when it stops cleanly with no pool VM left running.
	Watchdog *Watchdog `json:"watchdog,omitempty"`
	// API is where examples/xenha serves its HTTP API (examples/daemon
	// ignores it).
	API *API `json:"api,omitempty"`
}

// API configures the operator HTTP API of examples/xenha.
type API struct {
	// Listen is the mutual-TLS address of the API (reads for any
	// certificate of the pool's CA, writes for operator certificates).
	Listen string `json:"listen"`
	// StatusListen, if set, also serves the status page, /metrics and the
	// read endpoints without TLS, for Prometheus and a browser; keep it on
	// loopback or a management network.
	StatusListen string `json:"status_listen,omitempty"`
	// CRL names the revocation list (xenha ca revoke writes crl.pem): the
	// API and the cluster port refuse the certificates it lists. It is read
	// again whenever the file changes.
	CRL string `json:"crl,omitempty"`
}

// Watchdog configures fence/watchdog's Keeper.
type Watchdog struct {
	// Device is the watchdog device, e.g. "/dev/watchdog".
	Device string `json:"device"`
	// Timeout is programmed into the device ("10s" if omitted; drivers
	// count whole seconds).
	Timeout Duration `json:"timeout,omitempty"`
	// PetInterval is how often a keep-alive is written while the lease is
	// valid (a quarter of Timeout if omitted).
	PetInterval Duration `json:"pet_interval,omitempty"`
}

// defaultWatchdogTimeout is fence/watchdog's default.
const defaultWatchdogTimeout = 10 * time.Second

// timeout is the watchdog timeout in force.
func (w *Watchdog) timeout() time.Duration {
	if w.Timeout > 0 {
		return time.Duration(w.Timeout)
	}
	return defaultWatchdogTimeout
}

// TLSFiles are PEM file names.
type TLSFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Timings are optional overrides, as Go durations ("800ms", "9s").
type Timings struct {
	KeepAlive     Duration `json:"keepalive,omitempty"`
	WarnTime      Duration `json:"warntime,omitempty"`
	DeadTime      Duration `json:"deadtime,omitempty"`
	InitDead      Duration `json:"initdead,omitempty"`
	Lease         Duration `json:"lease,omitempty"`
	ReassignAfter Duration `json:"reassign_after,omitempty"`
	// WatchdogTimeout is, under fence_policy "allow-lease-expiry", the
	// longest watchdog timeout of the pool's VM hosts: the leader counts a
	// host as reset after lease + watchdog_timeout of silence, so
	// reassign_after must be at least that. On a host with a watchdog it
	// defaults to watchdog.timeout; a witness must give it.
	WatchdogTimeout Duration `json:"watchdog_timeout,omitempty"`
}

// Netguard configures netguard/nft.
type Netguard struct {
	Table  string `json:"table,omitempty"`  // default "xenha"
	Bridge string `json:"bridge,omitempty"` // where announcements go
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// UnmarshalJSON accepts "800ms", "9s", ...
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"800ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadFile reads and checks the configuration file at path.
func LoadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer f.Close()
	cfg, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Decode reads a configuration, rejecting unknown fields, trailing data
// and inconsistent settings with an error wrapping ErrConfig that names the
// field to fix.
func Decode(r io.Reader) (*File, error) {
	f, err := Parse(r)
	if err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse reads a configuration strictly (unknown keys, wrong types and
// trailing data are refused, with the line and column) without checking
// its values: Check lists those problems.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrConfig, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrConfig, maxConfigSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrConfig, jsonError(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the configuration object", ErrConfig)
	}
	return &f, nil
}

// jsonError adds the line and column to a decoding error.
func jsonError(data []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1 // Offset counts the offending byte
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return err.Error()
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(data[:off], '\n')) // 1-based
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// check reports the file's first problem, or nil.
func (f *File) check() error {
	if errs := f.problems(); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// bad is a configuration problem with the field to fix.
func bad(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// problems lists every problem of the file that can be seen without
// touching the host, each naming its field.
func (f *File) problems() []error {
	errs := f.addressProblems()
	add := func(field, format string, args ...any) { errs = append(errs, bad(field, format, args...)) }
	if f.ID == "" {
		add("id", "missing: name this host, e.g. \"xen-a\"")
	}
	if f.ClusterID == "" {
		add("cluster_id", "missing: name the pool")
	}
	if f.DataDir == "" {
		add("data_dir", "missing: give a directory for the Raft log, e.g. /var/lib/xenha")
	}
	role, err := parseRole(f.Role)
	if err != nil {
		add("role", "%v", err)
	}
	if f.Bootstrap && len(f.Join) > 0 {
		add("bootstrap", "set together with join: bootstrap forms a new pool, join enters an existing one; choose one")
	}
	if f.JoinTokenFile == "" {
		add("join_token_file", "missing: name the file holding the pool's join token")
	}
	if f.TLS.CA == "" || f.TLS.Cert == "" || f.TLS.Key == "" {
		add("tls", "ca, cert and key are all required (PEM files; ha/pki shows what they hold)")
	}
	if _, err := profile(f.Profile); err != nil {
		add("profile", "%v", err)
	}
	if role == ha.RoleWitness {
		if f.Hypervisor != "" || f.Netguard != nil || len(f.Storage) > 0 {
			add("role", "a witness runs no VMs: remove hypervisor, netguard and storage")
		}
	} else if f.Hypervisor == "" {
		add("hypervisor", "missing: give this host's libvirt URI, e.g. \"xen:///system\"")
	}
	errs = append(errs, f.pluginProblems()...)
	if err := f.checkWatchdog(role, bad); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// addressProblems checks bind, advertise and join.
func (f *File) addressProblems() []error {
	var errs []error
	if _, _, err := net.SplitHostPort(f.Bind); err != nil {
		errs = append(errs, bad("bind", "%q is not host:port (%v)", f.Bind, err))
	}
	if _, _, err := net.SplitHostPort(f.Advertise); f.Advertise != "" && err != nil {
		errs = append(errs, bad("advertise", "%q is not host:port (%v)", f.Advertise, err))
	}
	for i, a := range f.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, bad(fmt.Sprintf("join[%d]", i), "%q is not host:port (%v)", a, err))
		}
	}
	return errs
}

// pluginProblems checks the fence levels, storage kinds, API addresses and
// network guard.
func (f *File) pluginProblems() []error {
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, bad(field, format, args...)) }
	for _, h := range sortedHosts(f.Fence) {
		levels := f.Fence[h]
		if len(levels) == 0 {
			add("fence."+h, "no levels: give at least one method, or remove the host")
		}
		for i, l := range levels {
			errs = append(errs, l.problems(fmt.Sprintf("fence.%s[%d]", h, i))...)
		}
	}
	seen := map[string]bool{}
	for _, k := range f.Storage {
		if !knownStorage[k] {
			add("storage", "%q: this daemon knows \"iscsi\", \"nfs\", \"nbd\" and \"drbd\"", k)
		}
		if seen[k] {
			add("storage", "%q listed twice", k)
		}
		seen[k] = true
	}
	if f.API != nil {
		if _, _, err := net.SplitHostPort(f.API.Listen); err != nil {
			add("api.listen", "%q is not host:port (%v)", f.API.Listen, err)
		}
		if _, _, err := net.SplitHostPort(f.API.StatusListen); f.API.StatusListen != "" && err != nil {
			add("api.status_listen", "%q is not host:port (%v)", f.API.StatusListen, err)
		}
	}
	if f.Netguard != nil && len(f.Netguard.Bridge) > 15 {
		add("netguard.bridge", "%q is longer than 15 bytes, which no Linux interface name is", f.Netguard.Bridge)
	}
	return errs
}

// checkWatchdog checks fence_policy, watchdog and timings.watchdog_timeout
// against each other and the lease arithmetic ha.Config.Validate applies.
func (f *File) checkWatchdog(role ha.Role, bad func(field, format string, args ...any) error) error {
	policy, err := parseFencePolicy(f.FencePolicy)
	if err != nil {
		return bad("fence_policy", "%v", err)
	}
	if w := f.Watchdog; w != nil {
		if role == ha.RoleWitness {
			return bad("watchdog", "set on a witness, which runs no VMs and has nothing to self-fence: remove it")
		}
		if w.Device == "" {
			return bad("watchdog.device", "missing: give the watchdog device, e.g. \"/dev/watchdog\"")
		}
		if w.PetInterval > 0 && time.Duration(w.PetInterval) >= w.timeout() {
			return bad("watchdog.pet_interval", "%v must be shorter than watchdog.timeout (%v): a keep-alive must arrive before the device fires", time.Duration(w.PetInterval), w.timeout())
		}
	}
	wt := time.Duration(f.Timings.WatchdogTimeout)
	if policy != ha.AllowLeaseExpiry {
		if wt > 0 {
			return bad("timings.watchdog_timeout", "set, but fence_policy is %q, under which watchdog resets do not count as fencing: remove it, or set fence_policy to \"allow-lease-expiry\"", policy)
		}
		return nil
	}
	if role != ha.RoleWitness && f.Watchdog == nil {
		return bad("watchdog", "missing: fence_policy \"allow-lease-expiry\" counts this host as reset once its lease has ended unrenewed for timings.watchdog_timeout, which only a watchdog makes true; give {\"device\": \"/dev/watchdog\"}, or use \"require-fence\"")
	}
	if wt == 0 {
		if f.Watchdog == nil {
			return bad("timings.watchdog_timeout", "missing: fence_policy \"allow-lease-expiry\" on a witness needs the VM hosts' longest watchdog timeout, e.g. \"10s\"")
		}
		wt = f.Watchdog.timeout()
	}
	if f.Watchdog != nil && f.Watchdog.timeout() > wt {
		return bad("timings.watchdog_timeout", "%v is shorter than watchdog.timeout (%v): the leader would count this host as reset before its watchdog fires; raise it", wt, f.Watchdog.timeout())
	}
	cfg, err := profile(f.Profile)
	if err != nil {
		return bad("profile", "%v", err)
	}
	applyTimings(&cfg, f.Timings)
	if cfg.ReassignAfter < cfg.Lease+wt {
		return bad("timings.reassign_after", "%v must be at least lease (%v) + watchdog_timeout (%v) = %v under fence_policy \"allow-lease-expiry\": a silent host's VMs may move only once its watchdog has reset it; set it to %q or more",
			cfg.ReassignAfter, cfg.Lease, wt, cfg.Lease+wt, (cfg.Lease + wt).String())
	}
	return nil
}

func parseFencePolicy(s string) (ha.FencePolicy, error) {
	switch p := ha.FencePolicy(strings.ToLower(s)); p {
	case "", ha.RequireFence:
		return ha.RequireFence, nil
	case ha.AllowLeaseExpiry:
		return p, nil
	}
	return "", fmt.Errorf("%q: use \"require-fence\" or \"allow-lease-expiry\"", s)
}

// watchdogTimeout is the ha.Config.WatchdogTimeout the file asks for (zero
// unless fence_policy is allow-lease-expiry).
func (f *File) watchdogTimeout() time.Duration {
	if p, _ := parseFencePolicy(f.FencePolicy); p != ha.AllowLeaseExpiry {
		return 0
	}
	if f.Timings.WatchdogTimeout > 0 {
		return time.Duration(f.Timings.WatchdogTimeout)
	}
	if f.Watchdog != nil {
		return f.Watchdog.timeout()
	}
	return 0
}

func parseRole(s string) (ha.Role, error) {
	switch strings.ToLower(s) {
	case "", "voter":
		return ha.RoleVoter, nil
	case "nonvoter", "non-voter":
		return ha.RoleNonVoter, nil
	case "witness":
		return ha.RoleWitness, nil
	}
	return "", fmt.Errorf("%q: use \"voter\", \"nonvoter\" or \"witness\"", s)
}

func profile(s string) (ha.Config, error) {
	switch strings.ToLower(s) {
	case "", "default":
		return ha.DefaultConfig(), nil
	case "fastlan":
		return ha.FastLAN(), nil
	}
	return ha.Config{}, fmt.Errorf("%q: use \"default\" or \"fastlan\"", s)
}
