package main

import (
	"flag"
	"fmt"
	"io"
	"time"
)

// caMain is `xenha ca`: init POOL, issue member|operator NAME, revoke
// member|operator NAME, list.
func caMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xenha ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "xenha-ca", "the CA's directory (created 0700)")
	validFor := fs.Duration("valid-for", 0, "validity of what is issued (default: 10 years for the CA, 1 year for certificates)")
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usage := func() int {
		fmt.Fprintln(stderr, "usage: xenha ca init POOL | issue member|operator NAME | revoke member|operator NAME | list  [--dir DIR]")
		return exitUsage
	}
	valid := func(def time.Duration) time.Duration {
		if *validFor > 0 {
			return *validFor
		}
		return def
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "xenha ca: %v\n", err)
		return exitFailure
	}
	switch {
	case len(rest) == 2 && rest[0] == "init":
		if _, err := initCA(*dir, rest[1], valid(10*365*24*time.Hour)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "CA for pool %s in %s (key ca.key, mode 0600: keep it off the members)\n", rest[1], *dir)
	case len(rest) == 3 && rest[0] == "issue" && (rest[1] == RoleMember || rest[1] == RoleOperator):
		ca, err := openCA(*dir)
		if err != nil {
			return fail(err)
		}
		files, err := ca.issue(rest[1], rest[2], valid(365*24*time.Hour))
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s %s: ca %s, cert %s, key %s\n", rest[1], rest[2], files.CA, files.Cert, files.Key)
	case len(rest) == 3 && rest[0] == "revoke" && (rest[1] == RoleMember || rest[1] == RoleOperator):
		ca, err := openCA(*dir)
		if err != nil {
			return fail(err)
		}
		n, err := ca.revoke(rest[1], rest[2])
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "revoked %d certificate(s) of %s %s; install %s/crl.pem where api.crl points and restart the members\n", n, rest[1], rest[2], *dir)
	case len(rest) == 1 && rest[0] == "list":
		ca, err := openCA(*dir)
		if err != nil {
			return fail(err)
		}
		list, err := ca.issued()
		if err != nil {
			return fail(err)
		}
		for _, c := range list {
			state := "valid"
			if !c.Revoked.IsZero() {
				state = "revoked " + c.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\texpires %s\t%s\n", c.Role, c.Name, c.Serial, c.Expires.Format(time.RFC3339), state)
		}
	default:
		return usage()
	}
	return exitOK
}
