package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/xenha/xenha/internal/testenv"
)

// event is one line of go test -json (see 'go doc cmd/test2json').
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output events
}

// test is what the report keeps of one test that has not ended.
type test struct {
	name     string
	result   string   // its "--- FAIL: name (1.00s)" line, once it ended
	own      []string // its output, without -v's framing lines
	messages []string // its log messages, the last of which a skip gives as reason
	children []*test  // subtests, in the order they started
	failed   bool
}

// render prints a failed (or unfinished) test as go test without -v does:
// the result line, the test's output, then its failed subtests, each level
// indented four more spaces.
func (t *test) render(w io.Writer, depth int) {
	indent := strings.Repeat("    ", depth)
	if t.result != "" {
		fmt.Fprint(w, indent+strings.TrimLeft(t.result, " "))
	}
	for _, l := range t.own {
		fmt.Fprint(w, indent+l)
	}
	for _, c := range t.children {
		if c.failed || c.result == "" {
			c.render(w, depth+1)
		}
	}
}

// report turns go test's events into go test's usual output.
type report struct {
	w       io.Writer
	tests   map[string]*test    // package + "\x00" + test name
	partial map[string]string   // an output line not yet ended, by the same key
	pending map[string][]string // a package's own output before its closing line
	skips   map[string][]string // reason -> "pkg: test"
}

func newReport(w io.Writer) *report {
	return &report{w: w, tests: map[string]*test{}, partial: map[string]string{}, pending: map[string][]string{}, skips: map[string][]string{}}
}

// read consumes the event stream until it ends.
func (r *report) read(events io.Reader) error {
	sc := bufio.NewScanner(events)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			// Not an event: pass it on as it came.
			fmt.Fprintln(r.w, sc.Text())
			continue
		}
		r.handle(e)
	}
	r.flushAll()
	return sc.Err()
}

func key(pkg, name string) string { return pkg + "\x00" + name }

// top is the name of the top-level test that name belongs to.
func top(name string) string {
	t, _, _ := strings.Cut(name, "/")
	return t
}

func (r *report) handle(e event) {
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.w, e.Output)
	case e.Test == "":
		r.packageEvent(e)
	case e.Action == "run":
		t := &test{name: e.Test}
		r.tests[key(e.Package, e.Test)] = t
		if i := strings.LastIndexByte(e.Test, '/'); i > 0 {
			if parent := r.tests[key(e.Package, e.Test[:i])]; parent != nil {
				parent.children = append(parent.children, t)
			}
		}
	case e.Action == "output":
		r.output(e)
	case e.Action == "pass" || e.Action == "skip" || e.Action == "fail":
		r.end(e)
	}
}

// closing matches the line go test ends a package with.
var closing = regexp.MustCompile(`^(ok  |FAIL|\?   )\t`)

// packageEvent prints the package's own output, but not the PASS that only
// -v prints, together with its closing line, so that other packages' lines
// do not come between them. Before a failing package's closing line it
// prints what its unfinished tests said: a test that timed out or crashed
// the binary never ended.
func (r *report) packageEvent(e event) {
	if e.Action != "output" || e.Output == "PASS\n" {
		return
	}
	if !closing.MatchString(e.Output) {
		r.pending[e.Package] = append(r.pending[e.Package], e.Output)
		return
	}
	r.flushUnfinished(e.Package)
	fmt.Fprint(r.w, strings.Join(r.pending[e.Package], "")+e.Output)
	delete(r.pending, e.Package)
}

// flushAll prints what a stream that ended early left unprinted.
func (r *report) flushAll() {
	pkgs := map[string]bool{}
	for k := range r.tests {
		p, _, _ := strings.Cut(k, "\x00")
		pkgs[p] = true
	}
	for p := range r.pending {
		pkgs[p] = true
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		r.flushUnfinished(p)
		fmt.Fprint(r.w, strings.Join(r.pending[p], ""))
		delete(r.pending, p)
	}
}

var (
	// framing matches the lines -v adds before tests, which go test
	// without -v does not print.
	framing = regexp.MustCompile(`^=== (RUN|PAUSE|CONT|NAME)\s`)
	// result matches a test's result line.
	result = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): `)
	// message matches the first line of a t.Log, t.Error or t.Skip message.
	message = regexp.MustCompile(`^\s+[^\s:]+\.go:\d+: `)
)

func (r *report) output(e event) {
	k := key(e.Package, e.Test)
	text := r.partial[k] + e.Output
	lines := strings.SplitAfter(text, "\n")
	r.partial[k] = lines[len(lines)-1] // "" when text ended with a newline
	for _, line := range lines[:len(lines)-1] {
		r.line(e.Package, e.Test, line)
	}
}

func (r *report) line(pkg, name, line string) {
	t := r.tests[key(pkg, name)]
	switch {
	case framing.MatchString(line):
	case t == nil:
		fmt.Fprint(r.w, line) // output of a test the stream never started
	case result.MatchString(line):
		t.result = line
	case message.MatchString(line):
		t.messages = append(t.messages, strings.TrimSpace(message.ReplaceAllString(line, "")))
		t.own = append(t.own, line)
	default:
		if len(t.messages) > 0 && strings.HasPrefix(line, "        ") {
			last := &t.messages[len(t.messages)-1]
			*last += " " + strings.TrimSpace(line)
		}
		t.own = append(t.own, line)
	}
}

func (r *report) end(e event) {
	k := key(e.Package, e.Test)
	if rest := r.partial[k]; rest != "" {
		r.partial[k] = ""
		r.line(e.Package, e.Test, rest+"\n")
	}
	t := r.tests[k]
	if t == nil {
		return
	}
	t.failed = e.Action == "fail"
	if e.Action == "skip" {
		reason := "(no reason given)"
		if n := len(t.messages); n > 0 {
			reason = t.messages[n-1]
		}
		r.skips[reason] = append(r.skips[reason], shortPkg(e.Package)+": "+e.Test)
	}
	delete(r.tests, k) // a subtest lives on in its parent's children
	if t.failed && !strings.Contains(e.Test, "/") {
		t.render(r.w, 0)
	}
}

// flushUnfinished prints the output of the package's tests that never
// ended, and forgets them.
func (r *report) flushUnfinished(pkg string) {
	var names []string
	for k := range r.tests {
		if p, name, _ := strings.Cut(k, "\x00"); p == pkg && !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(r.w, "--- UNFINISHED: %s\n", name)
		r.tests[key(pkg, name)].render(r.w, 0)
	}
	for k := range r.tests {
		if strings.HasPrefix(k, pkg+"\x00") {
			delete(r.tests, k)
		}
	}
}

const module = "github.com/xenha/xenha/"

func shortPkg(p string) string {
	if s := strings.TrimPrefix(p, module); s != "" {
		return s
	}
	return p
}

// summary prints the skipped tests grouped by reason, the most frequent
// reason first: first those for something the machine lacks (internal/testenv
// marks them), then those by design.
func (r *report) summary() {
	if len(r.skips) == 0 {
		fmt.Fprintln(r.w, "skipped: none")
		return
	}
	var machine, design []string
	total := 0
	for reason, tests := range r.skips {
		total += len(tests)
		if strings.HasPrefix(reason, testenv.SkipPrefix) {
			machine = append(machine, reason)
		} else {
			design = append(design, reason)
		}
	}
	fmt.Fprintf(r.w, "skipped: %d tests for %d reasons\n", total, len(r.skips))
	if len(machine) > 0 {
		fmt.Fprintln(r.w, "  not run, for what this machine lacks (install or enable it, then run again):")
		r.reasons(machine)
	}
	if len(design) > 0 {
		fmt.Fprintln(r.w, "  skipped by design (optional interfaces, flags, helpers):")
		r.reasons(design)
	}
}

func (r *report) reasons(reasons []string) {
	sort.Slice(reasons, func(i, j int) bool {
		a, b := r.skips[reasons[i]], r.skips[reasons[j]]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return reasons[i] < reasons[j]
	})
	for _, reason := range reasons {
		tests := r.skips[reason]
		fmt.Fprintf(r.w, "%5d  %s\n       %s\n", len(tests), strings.TrimPrefix(reason, testenv.SkipPrefix), list(tests, 6))
	}
}

// list names up to n of the "pkg: test" items, each package once, and says
// how many more there are.
func list(items []string, n int) string {
	sort.Strings(items)
	var b strings.Builder
	last := ""
	for i, it := range items {
		if i == n {
			fmt.Fprintf(&b, " and %d more", len(items)-n)
			break
		}
		pkg, name, _ := strings.Cut(it, ": ")
		switch {
		case i == 0:
			b.WriteString(it)
		case pkg == last:
			b.WriteString(", " + name)
		default:
			b.WriteString("; " + it)
		}
		last = pkg
	}
	return b.String()
}
