package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xenha/xenha/fence"
)

// maxOutput caps what is kept of an agent's stdout and stderr each.
const maxOutput = 64 << 10

// waitDelay is how long Wait waits for the agent's pipes after the agent
// exited or was killed: a grandchild holding them must not stall fencing.
const waitDelay = 2 * time.Second

// result is one finished agent run.
type result struct {
	action   string
	code     int
	stdout   string
	stderr   string
	duration time.Duration
}

// summary is the agent's last meaningful output line, for evidence.
func (r result) summary() string {
	for _, s := range []string{r.stdout, r.stderr} {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			l := strings.TrimSpace(lines[i])
			if l != "" && !strings.Contains(l, "DeprecationWarning") && !strings.HasPrefix(l, "from ") {
				return l
			}
		}
	}
	return "no output"
}

func (r result) failure(host string, t Target, step string) error {
	out := strings.TrimSpace(r.stderr)
	if out == "" {
		out = strings.TrimSpace(r.stdout)
	}
	out = lastLines(out, 5)
	err := fmt.Errorf("%s action=%s exited %d: %w: %s", filepath.Base(t.Agent), r.action, r.code, ErrAgentFailed, out)
	// fence-agents' library words its connection failures the same way in
	// every agent (fencing.py, EC_CONNECTION_LOST and EC_TIMED_OUT).
	if strings.Contains(out, "Connection timed out") || strings.Contains(out, "Connection lost") {
		err = fmt.Errorf("%w: %w", fence.ErrUnreachable, err)
	}
	return &fence.Error{Host: host, Method: method(t), Step: step, Err: err}
}

func lastLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "DeprecationWarning") && l != "from pipes import quote" {
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, " | ")
}

// capped is a bytes.Buffer that keeps at most maxOutput bytes.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxOutput - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// stdin renders the options and action in the fence-agents stdin format.
func stdin(opts map[string]string, action string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		fmt.Fprintf(&b, "%s=%s\n", k, opts[k])
	}
	fmt.Fprintf(&b, "action=%s\n", action)
	return b.Bytes()
}

// run runs the agent once with the given action in its own process group,
// killing the whole group if the run outlives the fencer's timeout or ctx.
// A non-nil error means the agent did not complete (could not start, timed
// out, canceled); an agent's failure exit is in result.code.
func (f *Fencer) run(ctx context.Context, host string, t Target, action string) (result, error) {
	r := result{action: action, code: -1}
	if err := ctx.Err(); err != nil {
		return r, &fence.Error{Host: host, Method: method(t), Step: action, Err: err}
	}
	opts := t.Options
	var secrets []string
	if pw, ok := opts["password"]; ok && pw != "" {
		secrets = append(secrets, pw)
	}
	if t.PasswordFile != "" {
		pw, err := readPassword(t.PasswordFile)
		if err != nil {
			return r, &fence.Error{Host: host, Method: method(t), Step: "password", Err: err}
		}
		opts = make(map[string]string, len(t.Options)+1)
		for k, v := range t.Options {
			opts[k] = v
		}
		opts["password"] = pw
		if pw != "" {
			secrets = append(secrets, pw)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, f.paths[t.Agent])
	cmd.Stdin = bytes.NewReader(stdin(opts, action))
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Agents inherit nothing secret through the environment or arguments.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid is the process group: the agent and every helper
		// it started (ipmitool, ssh, ...).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	start := time.Now()
	err := cmd.Run()
	r.duration = time.Since(start)
	if cmd.Process != nil {
		// Helpers the agent left behind after it exited go too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	r.stdout, r.stderr = mask(stdout.String(), secrets), mask(stderr.String(), secrets)
	f.log.Debug("fence agent ran", "host", host, "agent", t.Agent, "action", action, "exit", cmd.ProcessState.ExitCode(), "duration", r.duration, "output", r.summary())
	switch {
	case rctx.Err() != nil && ctx.Err() == nil:
		return r, &fence.Error{Host: host, Method: method(t), Step: action,
			Err: fmt.Errorf("%s action=%s did not finish within %s; killed its process group: %w (%w)", filepath.Base(t.Agent), action, f.timeout, ErrTimeout, context.DeadlineExceeded)}
	case ctx.Err() != nil:
		return r, &fence.Error{Host: host, Method: method(t), Step: action, Err: fmt.Errorf("agent killed: %w", ctx.Err())}
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.code = 0
	case errors.As(err, &exitErr) && exitErr.Exited():
		r.code = exitErr.ExitCode()
	default:
		return r, &fence.Error{Host: host, Method: method(t), Step: action, Err: fmt.Errorf("run %s: %w", t.Agent, err)}
	}
	return r, nil
}

func mask(s string, secrets []string) string {
	for _, p := range secrets {
		s = strings.ReplaceAll(s, p, "********")
	}
	return s
}
