package run

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrUnexpected: a Replay was asked to run a command its transcript does not
// expect at this point.
var ErrUnexpected = errors.New("run: unexpected command")

// Step is one recorded command and its outcome. In Args, "*" matches any one
// argument and a final "..." matches any remaining arguments, so a transcript
// can stand for commands with temporary paths or ports in them.
type Step struct {
	Name     string
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
}

func (s Step) matches(c Cmd) bool {
	if s.Name != c.Name {
		return false
	}
	for i, a := range s.Args {
		if a == "..." && i == len(s.Args)-1 {
			return true
		}
		if i >= len(c.Args) || (a != "*" && a != c.Args[i]) {
			return false
		}
	}
	return len(s.Args) == len(c.Args)
}

// Replay is a Runner that answers from a transcript instead of running
// anything. By default steps are consumed in order and any other command is
// an ErrUnexpected; with Repeat, every call takes the first matching step and
// nothing is consumed (a tool whose answers do not depend on history).
type Replay struct {
	Repeat bool

	mu    sync.Mutex
	steps []Step
	next  int
	calls []Cmd
}

// NewReplay returns a Replay of steps.
func NewReplay(steps ...Step) *Replay { return &Replay{steps: steps} }

// Run implements Runner.
func (r *Replay) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("run %q: %w", cmd.String(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Cmd{Name: cmd.Name, Args: slices.Clone(cmd.Args), Stdin: cmd.Stdin})
	var st *Step
	if r.Repeat {
		for i := range r.steps {
			if r.steps[i].matches(cmd) {
				st = &r.steps[i]
				break
			}
		}
	} else if r.next < len(r.steps) && r.steps[r.next].matches(cmd) {
		st = &r.steps[r.next]
		r.next++
	}
	if st == nil {
		want := "nothing more"
		if !r.Repeat && r.next < len(r.steps) {
			want = fmt.Sprintf("%q", r.steps[r.next].cmd().String())
		}
		return Result{ExitCode: -1}, fmt.Errorf("replay: %w %q (transcript expects %s)", ErrUnexpected, cmd.String(), want)
	}
	res := Result{Stdout: []byte(st.Stdout), Stderr: []byte(st.Stderr), ExitCode: st.ExitCode}
	if st.ExitCode != 0 {
		return res, &ExitError{Cmd: cmd, ExitCode: st.ExitCode, Stderr: st.Stderr}
	}
	return res, nil
}

func (s Step) cmd() Cmd { return Cmd{Name: s.Name, Args: s.Args} }

// Calls returns every command run so far, in order.
func (r *Replay) Calls() []Cmd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Done reports an error naming the first step not yet run (ordered mode).
func (r *Replay) Done() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.Repeat && r.next < len(r.steps) {
		return fmt.Errorf("replay: %d step(s) not run, next %q", len(r.steps)-r.next, r.steps[r.next].cmd().String())
	}
	return nil
}

// ParseTranscript reads steps in the transcript format:
//
//	# a comment
//	$ nbd-client -c /dev/nbd0
//	1> 4242
//	2> a line on stderr
//	exit 0
//
// A "$" line starts a step (arguments split on blanks; an argument may be a Go
// quoted string); "1>" and "2>" lines add a line of stdout or stderr ("1>"
// alone adds an empty line); "exit N" sets the status (default 0).
func ParseTranscript(r io.Reader) ([]Step, error) {
	var steps []Step
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case strings.HasPrefix(text, "$ "):
			argv, err := splitArgs(text[2:])
			if err != nil || len(argv) == 0 {
				return nil, fmt.Errorf("transcript line %d: bad command %q: %v", line, text, err)
			}
			steps = append(steps, Step{Name: argv[0], Args: argv[1:]})
		case strings.HasPrefix(text, "1>") || strings.HasPrefix(text, "2>"):
			if len(steps) == 0 {
				return nil, fmt.Errorf("transcript line %d: output before any \"$ command\" line", line)
			}
			out := strings.TrimPrefix(text[2:], " ") + "\n"
			st := &steps[len(steps)-1]
			if text[0] == '1' {
				st.Stdout += out
			} else {
				st.Stderr += out
			}
		case strings.HasPrefix(trimmed, "exit "):
			if len(steps) == 0 {
				return nil, fmt.Errorf("transcript line %d: exit before any \"$ command\" line", line)
			}
			n, err := strconv.Atoi(strings.TrimSpace(trimmed[5:]))
			if err != nil {
				return nil, fmt.Errorf("transcript line %d: bad exit status %q", line, trimmed)
			}
			steps[len(steps)-1].ExitCode = n
		default:
			return nil, fmt.Errorf("transcript line %d: %q is not a comment, \"$ command\", \"1>\", \"2>\" or \"exit N\" line", line, text)
		}
	}
	return steps, sc.Err()
}

// ReadTranscript parses the transcript in file (see [ParseTranscript]); a
// parse error names the file.
func ReadTranscript(file string) ([]Step, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	steps, err := ParseTranscript(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return steps, nil
}

func splitArgs(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, err
			}
			a, _ := strconv.Unquote(q)
			out = append(out, a)
			s = s[len(q):]
			continue
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
}

// FormatTranscript writes steps in the format ParseTranscript reads.
func FormatTranscript(w io.Writer, steps []Step) error {
	var b bytes.Buffer
	for i, st := range steps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("$ " + quoteArg(st.Name))
		for _, a := range st.Args {
			b.WriteString(" " + quoteArg(a))
		}
		b.WriteByte('\n')
		writeLines(&b, "1>", st.Stdout)
		writeLines(&b, "2>", st.Stderr)
		fmt.Fprintf(&b, "exit %d\n", st.ExitCode)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeLines(b *bytes.Buffer, prefix, s string) {
	if s == "" {
		return
	}
	for l := range strings.Lines(s) {
		l = strings.TrimSuffix(l, "\n")
		if l == "" {
			b.WriteString(prefix + "\n")
		} else {
			b.WriteString(prefix + " " + l + "\n")
		}
	}
}

func quoteArg(a string) string {
	if a == "" || strings.ContainsAny(a, " \t\"\n") || !strconv.IsPrint(rune(a[0])) {
		return strconv.Quote(a)
	}
	return a
}

// Recorder runs commands through another Runner and keeps every command and
// its outcome as a Step, so a test on a machine that has the real tool can
// write the transcript that replays it elsewhere.
type Recorder struct {
	Runner Runner

	mu    sync.Mutex
	steps []Step
}

// Run implements Runner.
func (r *Recorder) Run(ctx context.Context, cmd Cmd) (Result, error) {
	res, err := r.Runner.Run(ctx, cmd)
	r.mu.Lock()
	r.steps = append(r.steps, Step{Name: cmd.Name, Args: slices.Clone(cmd.Args),
		Stdout: string(res.Stdout), Stderr: string(res.Stderr), ExitCode: res.ExitCode})
	r.mu.Unlock()
	return res, err
}

// Steps returns what was recorded so far.
func (r *Recorder) Steps() []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps)
}
