// Command xenha is the operator's tool for a xenha pool, in one binary:
//
//	xenha daemon -config FILE [-check]    a member: the pool plus its HTTP API, /metrics and status page
//	xenha status | hosts | vms | vm NAME | incidents | events [--follow]
//	xenha fence HOST | maintenance HOST on|off | migrate VM HOST
//	xenha put-vm FILE | remove-vm NAME | put-volume FILE | remove-volume ID | remove-host HOST
//	xenha ca init POOL | ca issue member|operator NAME | ca revoke member|operator NAME
//
// The commands in the second and third lines are clients of a member's HTTP
// API (mutual TLS with an operator certificate; see README.md), never a
// second way into the pool. Each prints a table, or JSON with --json, and
// exits with a code scripts can rely on (see exitOK and the others).
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitOK          = 0 // done (for --wait: and completed)
	exitFailure     = 1 // the pool refused, or the check found problems
	exitUsage       = 2 // bad command line, file or configuration
	exitNotFound    = 3 // no such host, VM or volume
	exitUnknown     = 4 // outcome unknown (indeterminate) or no leader reachable: read the state, retry
	exitUnsupported = 5 // not supported by this pool version
	exitTimeout     = 6 // --wait ran out before the action completed (it was accepted)
	exitConnect     = 7 // no answer from the member (address, TLS, certificate)
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one row of the command table.
type command struct {
	usage string
	help  string
	run   func(cl *client, args []string) int
	// gap marks an operation the library does not offer yet: the command
	// asks the member, which answers "not supported by this pool version".
	gap bool
}

// commands is the CLI's table. Rows with gap set are placeholders for
// operations a later pool version adds; they never fake a result.
var commands = map[string]command{
	"status":        {usage: "status", help: "the pool at a glance: leader, members, hosts, VMs, open incidents", run: cmdStatus},
	"hosts":         {usage: "hosts", help: "hosts with state, role, epoch and capacity", run: cmdHosts},
	"vms":           {usage: "vms", help: "VMs with state, host and policy", run: cmdVMs},
	"vm":            {usage: "vm NAME", help: "one VM in full", run: cmdVM},
	"volumes":       {usage: "volumes", help: "cluster volumes with writer and generation", run: cmdVolumes},
	"incidents":     {usage: "incidents", help: "host failures and their recovery timelines", run: cmdIncidents},
	"events":        {usage: "events [--follow]", help: "the member's recent events; --follow streams them", run: cmdEvents},
	"fence":         {usage: "fence HOST", help: "acknowledge that suspect HOST is powered off (a manual fence proof, recorded with your name)", run: cmdFence},
	"maintenance":   {usage: "maintenance HOST on|off", help: "drain HOST for maintenance, or bring it back; --wait until drained", run: cmdMaintenance},
	"migrate":       {usage: "migrate VM HOST", help: "move VM to HOST (live when possible); --wait until it runs there", run: cmdMigrate},
	"put-vm":        {usage: "put-vm FILE", help: "add or replace a VM from a JSON file (- for stdin); --wait until it runs", run: cmdPutVM},
	"remove-vm":     {usage: "remove-vm NAME", help: "remove a VM (the pool stops it first if it runs); --wait until it is gone", run: cmdRemoveVM},
	"put-volume":    {usage: "put-volume FILE", help: "add or replace a cluster volume from a JSON file", run: cmdPutVolume},
	"remove-volume": {usage: "remove-volume ID", help: "remove a cluster volume", run: cmdRemoveVolume},
	"remove-host":   {usage: "remove-host HOST", help: "remove a departed host from the pool (refused if quorum would be at risk)", run: cmdRemoveHost},
	"why":           {usage: "why VM", help: "why a VM is where it is, or waits", gap: true, run: gapCmd("GET", "/v1/vms/%s/why", 1)},
	"disarm":        {usage: "disarm", help: "stop automatic failover pool-wide", gap: true, run: gapCmd("POST", "/v1/disarm", 0)},
	"arm":           {usage: "arm", help: "resume automatic failover", gap: true, run: gapCmd("POST", "/v1/arm", 0)},
	"what-if":       {usage: "what-if HOST...", help: "where the VMs would go if the hosts failed", gap: true, run: gapCmd("POST", "/v1/what-if", -1)},
	"recover":       {usage: "recover", help: "recover a pool that lost quorum", gap: true, run: gapCmd("POST", "/v1/recover", 0)},
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	switch args[0] {
	case "daemon":
		return daemonMain(args[1:], stdout, stderr)
	case "ca":
		return caMain(args[1:], stdout, stderr)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "xenha: unknown command %q (xenha help lists them)\n", args[0])
		return exitUsage
	}
	cl, rest, err := newClient(args[0], args[1:], stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "xenha %s: %v\nusage: xenha %s\n", args[0], err, cmd.usage)
		return exitUsage
	}
	cl.usage = cmd.usage
	return cmd.run(cl, rest)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xenha COMMAND [flags] [args]")
	fmt.Fprintln(w, "\n  daemon -config FILE [-check]   run a member (or only check its configuration)")
	fmt.Fprintln(w, "  ca init POOL | ca issue member|operator NAME | ca revoke member|operator NAME   [--dir DIR]")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		help := c.help
		if c.gap {
			help += " [not supported by this pool version]"
		}
		fmt.Fprintf(w, "  %-30s %s\n", c.usage, help)
	}
	fmt.Fprintln(w, "\nclient flags (anywhere after the command): --server URL --ca FILE --cert FILE --key FILE")
	fmt.Fprintln(w, "  (or XENHA_SERVER, XENHA_CA, XENHA_CERT, XENHA_KEY), --json, --wait, --timeout DURATION, --stale")
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 refused, 2 usage, 3 not found, 4 outcome unknown or no leader,")
	fmt.Fprintln(w, "  5 not supported by this pool version, 6 --wait timed out, 7 member unreachable")
}

// gapCmd is a command for an operation this pool version lacks: it asks
// the member (a newer one may answer) and reports what it says. nargs is
// the number of arguments, -1 for one or more.
func gapCmd(method, path string, nargs int) func(cl *client, args []string) int {
	return func(cl *client, args []string) int {
		if (nargs >= 0 && len(args) != nargs) || (nargs < 0 && len(args) == 0) {
			return cl.usageErr("wrong number of arguments")
		}
		p := path
		if strings.Contains(p, "%s") {
			p = fmt.Sprintf(p, args[0])
		}
		var out any
		var body any
		if nargs < 0 {
			body = map[string][]string{"hosts": args}
		}
		if code := cl.do(method, p, body, &out); code != exitOK {
			return code
		}
		return cl.printJSON(out)
	}
}
