package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/xenha/xenha/fence"
)

// Errors callers branch on.
var (
	// ErrAgentFailed: the agent ran and reported failure (exit 1, or an
	// unexpected exit code). Its output is in the error.
	ErrAgentFailed = errors.New("agent: fence agent failed")
	// ErrTimeout: the agent did not finish in time; its process group was
	// killed.
	ErrTimeout = errors.New("agent: fence agent timed out")
)

// Target is how to fence one host with an agent.
type Target struct {
	// Agent is the agent's name in PATH ("fence_ipmilan") or an absolute path.
	Agent string
	// Options are the agent's stdin options without action, e.g. ip, ipport,
	// username, lanplus, cipher. Keys are lower-case names; values are one
	// line each.
	Options map[string]string
	// PasswordFile, if set, names a file whose first line is passed as the
	// password option. It is read at each run.
	PasswordFile string
}

// Fencer runs fence agents. It implements fence.Fencer, fence.StatusReader
// and fence.Unfencer and is safe for concurrent use.
type Fencer struct {
	targets map[string]Target
	paths   map[string]string // agent → resolved path
	timeout time.Duration
	verify  time.Duration
	poll    time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// Option configures a Fencer.
type Option func(*Fencer)

// WithTimeout bounds each agent run (default 60s, fence-agents' own power
// timeouts fit inside it).
func WithTimeout(d time.Duration) Option { return func(f *Fencer) { f.timeout = d } }

// WithVerifyTimeout bounds how long Fence keeps running action=status after
// a successful off until the agent reports off (default 20s).
func WithVerifyTimeout(d time.Duration) Option { return func(f *Fencer) { f.verify = d } }

// WithPollInterval is the pause between status runs while verifying (default 500ms).
func WithPollInterval(d time.Duration) Option { return func(f *Fencer) { f.poll = d } }

// WithLogger logs agent runs to l (options and output with passwords masked).
func WithLogger(l *slog.Logger) Option { return func(f *Fencer) { f.log = l } }

// WithClock replaces time.Now for proof timestamps.
func WithClock(now func() time.Time) Option { return func(f *Fencer) { f.now = now } }

var optionKey = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// New returns a Fencer for the given hosts. It rejects unknown agents (not in
// PATH), option keys that are not agent option names, reserved keys
// (action, and password when PasswordFile is set) and values with newlines.
func New(targets map[string]Target, opts ...Option) (*Fencer, error) {
	f := &Fencer{
		targets: map[string]Target{},
		paths:   map[string]string{},
		timeout: 60 * time.Second,
		verify:  20 * time.Second,
		poll:    500 * time.Millisecond,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:     time.Now,
	}
	for _, o := range opts {
		o(f)
	}
	if f.timeout <= 0 || f.verify <= 0 || f.poll <= 0 {
		return nil, errors.New("agent: timeouts and poll interval must be positive")
	}
	hosts := slices.Sorted(maps.Keys(targets))
	for _, h := range hosts {
		t := targets[h]
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("agent: target for host %q: %w", h, err)
		}
		if _, ok := f.paths[t.Agent]; !ok {
			p, err := resolve(t.Agent)
			if err != nil {
				return nil, fmt.Errorf("agent: target for host %q: %w", h, err)
			}
			f.paths[t.Agent] = p
		}
		opts := make(map[string]string, len(t.Options))
		for k, v := range t.Options {
			opts[k] = v
		}
		t.Options = opts
		f.targets[h] = t
	}
	return f, nil
}

func resolve(agent string) (string, error) {
	if agent == "" {
		return "", errors.New("no agent named")
	}
	if strings.ContainsRune(agent, '/') && !filepath.IsAbs(agent) {
		return "", fmt.Errorf("agent %q: give a name in PATH or an absolute path", agent)
	}
	p, err := exec.LookPath(agent)
	if err != nil {
		return "", fmt.Errorf("fence agent %q not found (install the fence-agents package, or give its absolute path): %w", agent, err)
	}
	return p, nil
}

func (t Target) validate() error {
	var problems []string
	keys := slices.Sorted(maps.Keys(t.Options))
	for _, k := range keys {
		v := t.Options[k]
		switch {
		case !optionKey.MatchString(k):
			problems = append(problems, fmt.Sprintf("option key %q is not an agent option name (lower-case letters, digits, _ and -)", k))
		case k == "action":
			problems = append(problems, "option \"action\" is set by the fencer, remove it")
		case k == "password" && t.PasswordFile != "":
			problems = append(problems, "both option \"password\" and PasswordFile are set")
		case strings.ContainsAny(v, "\r\n\x00"):
			problems = append(problems, fmt.Sprintf("option %q has a newline or NUL in its value", k))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Hosts returns the configured hosts, sorted.
func (f *Fencer) Hosts() []string {
	return slices.Sorted(maps.Keys(f.targets))
}

func method(t Target) string { return "agent:" + filepath.Base(t.Agent) }

func (f *Fencer) target(host, step string) (Target, error) {
	t, ok := f.targets[host]
	if !ok {
		return t, &fence.Error{Host: host, Method: "agent", Step: step, Err: fence.ErrUnknownHost}
	}
	return t, nil
}

// Fence runs action=off, then action=status until the agent reports off
// (exit 2). The proof's evidence quotes both answers.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	t, err := f.target(host, "off")
	if err != nil {
		return fence.Proof{}, err
	}
	off, err := f.run(ctx, host, t, "off")
	if err != nil {
		return fence.Proof{}, err
	}
	if off.code != 0 {
		return fence.Proof{}, off.failure(host, t, "off")
	}
	st, err := f.waitStatus(ctx, host, t, 2)
	if err != nil {
		return fence.Proof{}, err
	}
	ev := fmt.Sprintf("%s action=off exit 0 (%s); action=status exit 2 (%s)", filepath.Base(t.Agent), off.summary(), st.summary())
	// status exit 2 after the off action: the agent read the power back as off.
	return fence.Proof{Host: host, Method: method(t), Evidence: ev, Time: f.now(), Kind: fence.ProofVerifiedOff}, nil
}

// Status runs action=status: exit 0 is on, 2 is off, anything else an error.
func (f *Fencer) Status(ctx context.Context, host string) (fence.Power, error) {
	t, err := f.target(host, "status")
	if err != nil {
		return fence.PowerUnknown, err
	}
	r, err := f.run(ctx, host, t, "status")
	if err != nil {
		return fence.PowerUnknown, err
	}
	switch r.code {
	case 0:
		return fence.PowerOn, nil
	case 2:
		return fence.PowerOff, nil
	}
	return fence.PowerUnknown, r.failure(host, t, "status")
}

// Unfence runs action=on and waits until status reports on (exit 0).
func (f *Fencer) Unfence(ctx context.Context, host string) error {
	t, err := f.target(host, "on")
	if err != nil {
		return err
	}
	r, err := f.run(ctx, host, t, "on")
	if err != nil {
		return err
	}
	if r.code != 0 {
		return r.failure(host, t, "on")
	}
	_, err = f.waitStatus(ctx, host, t, 0)
	return err
}

// waitStatus runs action=status until it exits with want.
func (f *Fencer) waitStatus(ctx context.Context, host string, t Target, want int) (result, error) {
	deadline := time.Now().Add(f.verify)
	for {
		r, err := f.run(ctx, host, t, "status")
		if err != nil {
			return r, err
		}
		if r.code == want {
			return r, nil
		}
		if r.code != 0 && r.code != 2 {
			return r, r.failure(host, t, "verify")
		}
		if time.Now().Add(f.poll).After(deadline) {
			state := "on"
			if want == 0 {
				state = "off"
			}
			return r, &fence.Error{Host: host, Method: method(t), Step: "verify",
				Err: fmt.Errorf("%s still reports %s after %s (%s): %w", filepath.Base(t.Agent), state, f.verify, r.summary(), fence.ErrNotOff)}
		}
		timer := time.NewTimer(f.poll)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return r, &fence.Error{Host: host, Method: method(t), Step: "verify", Err: ctx.Err()}
		}
	}
}

func readPassword(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimRight(line, "\r"), nil
}

var (
	_ fence.Fencer       = (*Fencer)(nil)
	_ fence.StatusReader = (*Fencer)(nil)
	_ fence.Unfencer     = (*Fencer)(nil)
)
