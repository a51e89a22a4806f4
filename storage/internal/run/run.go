// Package run executes the host tools that storage backends drive (nbd-client,
// drbdadm, iscsiadm, mount) behind a small [Runner] interface, so that tests can
// replace the machine with a [Replay] of recorded, real-format tool output.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"
)

// ErrNotInstalled: the program is not on this host's PATH.
var ErrNotInstalled = errors.New("run: program not installed")

// Runner runs one command to completion. It returns the captured output; a
// command that ran but exited non-zero returns its output and an *ExitError.
type Runner interface {
	Run(ctx context.Context, cmd Cmd) (Result, error)
}

// Cmd is one invocation: the program, its arguments and optional stdin.
type Cmd struct {
	Name  string
	Args  []string
	Stdin []byte
}

// Command is shorthand for Cmd{Name: name, Args: args}.
func Command(name string, args ...string) Cmd { return Cmd{Name: name, Args: args} }

// String renders the command line as a person would type it.
func (c Cmd) String() string {
	if len(c.Args) == 0 {
		return c.Name
	}
	return c.Name + " " + strings.Join(c.Args, " ")
}

// Result is what a command printed and how it ended.
type Result struct {
	Stdout []byte
	Stderr []byte
	// ExitCode is 0 on success, the program's status otherwise, -1 if it was
	// killed or never started.
	ExitCode int
}

// ExitError is a command that ran and failed. Stderr is kept (trimmed) so the
// caller's message can tell the operator what the tool said.
type ExitError struct {
	Cmd      Cmd
	ExitCode int
	Stderr   string
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg == "" {
		return fmt.Sprintf("%q exited with status %d", e.Cmd.String(), e.ExitCode)
	}
	return fmt.Sprintf("%q exited with status %d: %s", e.Cmd.String(), e.ExitCode, msg)
}

// Exec runs commands on this host with os/exec. The zero value is ready to use.
type Exec struct {
	// Env, if set, replaces the child's environment (KEY=value entries).
	Env []string
	// Logger receives one debug record per command; nil discards.
	Logger *slog.Logger
	// WaitDelay bounds how long Run waits for output after ctx ends and the
	// process is killed (children holding the pipes open); default 2s.
	WaitDelay time.Duration
}

// Run implements Runner.
func (e *Exec) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("run %q: %w", cmd.String(), err)
	}
	path, err := exec.LookPath(cmd.Name)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("run %q: %w (%v); install it or fix PATH", cmd.String(), ErrNotInstalled, err)
	}
	c := exec.CommandContext(ctx, path, cmd.Args...)
	c.Env = e.Env
	c.WaitDelay = e.WaitDelay
	if c.WaitDelay == 0 {
		c.WaitDelay = 2 * time.Second
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if cmd.Stdin != nil {
		c.Stdin = bytes.NewReader(cmd.Stdin)
	}
	start := time.Now()
	err = c.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: c.ProcessState.ExitCode()}
	if e.Logger != nil {
		e.Logger.LogAttrs(ctx, slog.LevelDebug, "run", slog.String("cmd", cmd.String()),
			slog.Int("exit", res.ExitCode), slog.Duration("took", time.Since(start)))
	}
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("run %q: %w", cmd.String(), ctx.Err())
	}
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return res, &ExitError{Cmd: cmd, ExitCode: res.ExitCode, Stderr: string(res.Stderr)}
	}
	return res, fmt.Errorf("run %q: %w", cmd.String(), err)
}
