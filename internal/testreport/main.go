// Command testreport runs go test and prints what go test prints without -v
// (the "ok  pkg" and "FAIL pkg" closing lines, and the output of every test
// that failed), then a summary of the tests that were skipped, grouped by the
// reason they gave. It exits with go test's status. It is what `make test`
// runs:
//
//	go run ./internal/testreport -race -timeout 25m ./...
//
// Every argument goes to go test, which runs with -json; testreport reads
// the events. A skip in xenha means a part of it did not run on this machine
// (internal/testenv names what is missing and how to install it), so the
// summary is the list of what this run did not prove.
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
)

func main() {
	os.Exit(run(os.Args[1:], "", os.Stdout, os.Stderr))
}

// run runs go test -json with args in dir and reports to stdout; it returns
// go test's exit status.
func run(args []string, dir string, stdout, stderr io.Writer) int {
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = stderr // build errors and "go: downloading" lines
	events, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testreport: %v\n", err)
		return 2
	}
	// ^C reaches go test through the terminal's process group; keep reading
	// until it has printed what it has, instead of dying first.
	signal.Ignore(os.Interrupt)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testreport: starting go test: %v\n", err)
		return 2
	}
	r := newReport(stdout)
	if err := r.read(events); err != nil {
		fmt.Fprintf(stderr, "testreport: reading go test's events: %v\n", err)
	}
	waitErr := cmd.Wait()
	if waitErr != nil {
		// go test's last line when anything failed.
		fmt.Fprintln(stdout, "FAIL")
	}
	r.summary()
	if waitErr != nil {
		if ee, ok := waitErr.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(stderr, "testreport: go test: %v\n", waitErr)
		return 1
	}
	return 0
}
