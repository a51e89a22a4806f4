package ipmi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xenha/xenha/fence"
)

// Method is the method name in proofs and errors.
const Method = "ipmi"

// ErrRejected: the BMC answered but refused the session: wrong user or
// password, too low a privilege, or no cipher suite in common. Retrying will
// not help; fix the target's configuration.
var ErrRejected = errors.New("ipmi: BMC refused the session (check user, password, privilege and cipher suites)")

// Interface selects the IPMI LAN protocol version.
type Interface string

// Interfaces.
const (
	// Lanplus is IPMI 2.0 / RMCP+, authenticated and optionally encrypted
	// according to the cipher suite. The default.
	Lanplus Interface = "lanplus"
	// Lan is IPMI 1.5, for old BMCs; prefer Lanplus where the BMC has it.
	Lan Interface = "lan"
)

// Target is one host's BMC.
type Target struct {
	// Address is the BMC's IP address or name.
	Address string
	// Port is the BMC's UDP port; zero means 623.
	Port int
	// User is the BMC user, which needs the operator or administrator
	// privilege for chassis control.
	User string
	// Interface is Lanplus (default) or Lan.
	Interface Interface
	// Privilege is the session privilege to ask for: "administrator"
	// (default) or "operator", which suffices for chassis control and is
	// what a dedicated fencing user usually has.
	Privilege string
	// CipherSuites are the RMCP+ cipher suite IDs to try, in order (for
	// example 17 then 3). Empty lets the client pick the best the BMC offers.
	// Lanplus only.
	CipherSuites []int
	// PasswordFile names a file holding the password (one line; trailing
	// newline ignored). It is read at each use, so a rotated password takes
	// effect without a restart. Ignored when the Fencer has a PasswordFunc.
	PasswordFile string
}

func (t Target) port() int {
	if t.Port == 0 {
		return 623
	}
	return t.Port
}

func (t Target) iface() Interface {
	if t.Interface == "" {
		return Lanplus
	}
	return t.Interface
}

func (t Target) String() string {
	s := fmt.Sprintf("%s:%d (%s", t.Address, t.port(), t.iface())
	if len(t.CipherSuites) > 0 {
		s += fmt.Sprintf(", cipher suites %v", t.CipherSuites)
	}
	return s + ")"
}

// PasswordFunc returns the BMC password for a host. It runs on the fencing
// host, so secrets stay local.
type PasswordFunc func(ctx context.Context, host string) (string, error)

// Fencer fences hosts through their BMCs. It implements fence.Fencer,
// fence.StatusReader and fence.Unfencer. It is safe for concurrent use; each
// call opens its own session.
type Fencer struct {
	targets   map[string]Target
	passwords PasswordFunc
	timeout   time.Duration // per UDP exchange
	retries   int
	verify    time.Duration
	poll      time.Duration
	log       *slog.Logger
	now       func() time.Time
}

// Option configures a Fencer.
type Option func(*Fencer)

// WithPasswords resolves every host's password with f instead of the
// targets' PasswordFile.
func WithPasswords(f PasswordFunc) Option { return func(x *Fencer) { x.passwords = f } }

// WithExchangeTimeout sets how long to wait for each BMC reply before a
// retry (default 1s, as ipmitool's lanplus).
func WithExchangeTimeout(d time.Duration) Option { return func(x *Fencer) { x.timeout = d } }

// WithRetries sets how many times an unanswered request is resent (default 2).
func WithRetries(n int) Option { return func(x *Fencer) { x.retries = n } }

// WithVerifyTimeout bounds how long Fence polls for the power to read off
// after power-down (default 20s; some BMCs take seconds).
func WithVerifyTimeout(d time.Duration) Option { return func(x *Fencer) { x.verify = d } }

// WithPollInterval sets the pause between chassis status polls (default 200ms).
func WithPollInterval(d time.Duration) Option { return func(x *Fencer) { x.poll = d } }

// WithLogger logs sessions and power changes to l (never passwords).
func WithLogger(l *slog.Logger) Option { return func(x *Fencer) { x.log = l } }

// WithClock replaces time.Now for proof timestamps.
func WithClock(now func() time.Time) Option { return func(x *Fencer) { x.now = now } }

// New returns a Fencer for the given hosts (cluster host ID → BMC). It
// rejects targets without an address, with an unknown interface, an invalid
// port or cipher suite, or without a password source.
func New(targets map[string]Target, opts ...Option) (*Fencer, error) {
	f := &Fencer{
		targets: make(map[string]Target, len(targets)),
		timeout: time.Second,
		retries: 2,
		verify:  20 * time.Second,
		poll:    200 * time.Millisecond,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:     time.Now,
	}
	for _, o := range opts {
		o(f)
	}
	if f.timeout <= 0 || f.retries < 0 || f.verify <= 0 || f.poll <= 0 {
		return nil, fmt.Errorf("ipmi: timeouts and poll interval must be positive and retries not negative")
	}
	names := slices.Sorted(maps.Keys(targets))
	for _, h := range names {
		t := targets[h]
		if err := t.validate(f.passwords != nil); err != nil {
			return nil, fmt.Errorf("ipmi: target for host %q: %w", h, err)
		}
		t.CipherSuites = append([]int(nil), t.CipherSuites...)
		f.targets[h] = t
	}
	return f, nil
}

func (t Target) validate(havePasswordFunc bool) error {
	var problems []string
	if strings.TrimSpace(t.Address) == "" {
		problems = append(problems, "no address")
	}
	if t.Port < 0 || t.Port > 65535 {
		problems = append(problems, fmt.Sprintf("port %d out of range", t.Port))
	}
	switch t.iface() {
	case Lan, Lanplus:
	default:
		problems = append(problems, fmt.Sprintf("interface %q is neither %q nor %q", t.Interface, Lanplus, Lan))
	}
	for _, c := range t.CipherSuites {
		if c < 0 || c > 19 {
			problems = append(problems, fmt.Sprintf("cipher suite %d out of range 0-19", c))
		}
	}
	switch t.Privilege {
	case "", "administrator", "operator":
	default:
		problems = append(problems, fmt.Sprintf("privilege %q is neither \"administrator\" nor \"operator\"", t.Privilege))
	}
	if len(t.CipherSuites) > 0 && t.iface() == Lan {
		problems = append(problems, "cipher suites need the lanplus interface")
	}
	if t.User == "" {
		problems = append(problems, "no user")
	}
	if !havePasswordFunc && t.PasswordFile == "" {
		problems = append(problems, "no password source (set PasswordFile or use WithPasswords)")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Hosts returns the configured host IDs, sorted.
func (f *Fencer) Hosts() []string {
	return slices.Sorted(maps.Keys(f.targets))
}

func (f *Fencer) target(host, step string) (Target, error) {
	t, ok := f.targets[host]
	if !ok {
		return t, &fence.Error{Host: host, Method: Method, Step: step, Err: fence.ErrUnknownHost}
	}
	return t, nil
}

func (f *Fencer) password(ctx context.Context, host string, t Target) (string, error) {
	if f.passwords != nil {
		pw, err := f.passwords(ctx, host)
		if err != nil {
			return "", fmt.Errorf("password callback: %w", err)
		}
		return pw, nil
	}
	data, err := os.ReadFile(t.PasswordFile)
	if err != nil {
		// The path is configuration, not a secret; it helps the operator.
		return "", fmt.Errorf("read password file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// Fence powers the host off through its BMC and returns a proof once the BMC
// reports the chassis power off. An already-off host is proved off at once.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	s, err := f.open(ctx, host, "connect")
	if err != nil {
		return fence.Proof{}, err
	}
	defer s.close()
	on, err := s.power(ctx, "status")
	if err != nil {
		return fence.Proof{}, err
	}
	if !on {
		return f.proof(host, s, "chassis power already off", 0), nil
	}
	if err := s.control(ctx, "off", powerDown); err != nil {
		return fence.Proof{}, err
	}
	f.log.Info("ipmi power-down sent", "host", host, "bmc", s.t.String())
	polls, err := s.waitPower(ctx, false)
	if err != nil {
		return fence.Proof{}, err
	}
	return f.proof(host, s, "chassis power-down sent; chassis status reports power off", polls), nil
}

func (f *Fencer) proof(host string, s *session, what string, polls int) fence.Proof {
	ev := fmt.Sprintf("BMC %s: %s", s.t, what)
	if polls > 0 {
		ev += fmt.Sprintf(" (after %d status reads)", polls)
	}
	// Both callers read the chassis status as off: the strongest proof.
	return fence.Proof{Host: host, Method: Method, Evidence: ev, Time: f.now(), Kind: fence.ProofVerifiedOff}
}

// Status reads the host's chassis power state from its BMC.
func (f *Fencer) Status(ctx context.Context, host string) (fence.Power, error) {
	s, err := f.open(ctx, host, "connect")
	if err != nil {
		return fence.PowerUnknown, err
	}
	defer s.close()
	on, err := s.power(ctx, "status")
	if err != nil {
		return fence.PowerUnknown, err
	}
	if on {
		return fence.PowerOn, nil
	}
	return fence.PowerOff, nil
}

// Unfence powers the host on and waits until the BMC reports it on.
func (f *Fencer) Unfence(ctx context.Context, host string) error {
	s, err := f.open(ctx, host, "connect")
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.control(ctx, "on", powerUp); err != nil {
		return err
	}
	_, err = s.waitPower(ctx, true)
	return err
}

// Cycle power-cycles the host (off, then on, done by the BMC). It proves
// nothing about the host being off and is not a fencing action; use it to
// recover a host after maintenance.
func (f *Fencer) Cycle(ctx context.Context, host string) error {
	s, err := f.open(ctx, host, "connect")
	if err != nil {
		return err
	}
	defer s.close()
	on, err := s.power(ctx, "status")
	if err != nil {
		return err
	}
	if !on {
		// IPMI says power cycle has no effect on a host that is off.
		if err := s.control(ctx, "on", powerUp); err != nil {
			return err
		}
		_, err = s.waitPower(ctx, true)
		return err
	}
	return s.control(ctx, "cycle", powerCycle)
}

var (
	_ fence.Fencer       = (*Fencer)(nil)
	_ fence.StatusReader = (*Fencer)(nil)
	_ fence.Unfencer     = (*Fencer)(nil)
)
