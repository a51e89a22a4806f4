package main

import (
	"cmp"
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
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	usage := func() int {
		fmt.Fprintln(stderr, "usage: xenha ca init POOL | issue member|operator NAME | revoke member|operator NAME | list  [--dir DIR]")
		return exitUsage
	}
	valid := func(def time.Duration) time.Duration { return cmp.Or(*validFor, def) }
	fail := func(err error) int {
		fmt.Fprintf(stderr, "xenha ca: %v\n", err)
		return exitFailure
	}
	var ca *diskCA
	if len(rest) > 0 && rest[0] != "init" {
		if ca, err = openCA(*dir); err != nil {
			return fail(err)
		}
	}
	role := len(rest) == 3 && (rest[1] == RoleMember || rest[1] == RoleOperator)
	switch {
	case len(rest) == 2 && rest[0] == "init":
		if _, err := initCA(*dir, rest[1], valid(10*365*24*time.Hour)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "CA for pool %s in %s (key ca.key, mode 0600: keep it off the members)\n", rest[1], *dir)
	case role && rest[0] == "issue":
		files, err := ca.issue(rest[1], rest[2], valid(365*24*time.Hour))
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s %s: ca %s, cert %s, key %s\n", rest[1], rest[2], files.CA, files.Cert, files.Key)
	case role && rest[0] == "revoke":
		n, err := ca.revoke(rest[1], rest[2])
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "revoked %d certificate(s) of %s %s; install %s/crl.pem where api.crl points and restart the members\n", n, rest[1], rest[2], *dir)
	case len(rest) == 1 && rest[0] == "list":
		if err := listIssued(ca, stdout); err != nil {
			return fail(err)
		}
	default:
		return usage()
	}
	return exitOK
}

// listIssued prints issued.json, one certificate a line.
func listIssued(ca *diskCA, w io.Writer) error {
	list, err := ca.issued()
	if err != nil {
		return err
	}
	for _, c := range list {
		state := "valid"
		if !c.Revoked.IsZero() {
			state = "revoked " + c.Revoked.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\texpires %s\t%s\n", c.Role, c.Name, c.Serial, c.Expires.Format(time.RFC3339), state)
	}
	return nil
}

// parseInterspersed parses fs's flags wherever they stand among args and
// returns the other arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
