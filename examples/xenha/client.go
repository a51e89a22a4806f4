package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xenha/xenha/ha"
)

// client is the CLI's side of the HTTP API.
type client struct {
	name, usage    string
	base           string
	http           *http.Client
	json, wait     bool
	follow, stale  bool
	timeout        time.Duration
	stdout, stderr io.Writer
}

// newClient parses the client flags, which may stand anywhere among the
// command's arguments, and returns the rest.
func newClient(name string, args []string, stdout, stderr io.Writer) (*client, []string, error) {
	fs := flag.NewFlagSet("xenha "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	server := fs.String("server", env("XENHA_SERVER", "https://127.0.0.1:7947"), "a member's API URL")
	caFile := fs.String("ca", env("XENHA_CA", ""), "the pool's CA certificate (PEM)")
	certFile := fs.String("cert", env("XENHA_CERT", ""), "your operator certificate (PEM)")
	keyFile := fs.String("key", env("XENHA_KEY", ""), "its key (PEM)")
	cl := &client{name: name, stdout: stdout, stderr: stderr}
	fs.BoolVar(&cl.json, "json", false, "print JSON")
	fs.BoolVar(&cl.wait, "wait", false, "wait until the action has completed, showing progress")
	fs.BoolVar(&cl.follow, "follow", false, "keep streaming events")
	fs.BoolVar(&cl.stale, "stale", false, "read the answering member's own state, without asking the leader")
	fs.DurationVar(&cl.timeout, "timeout", time.Minute, "how long --wait waits")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(*server)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("--server %q: want https://HOST:PORT", *server)
	}
	cl.base = strings.TrimSuffix(u.String(), "/")
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if u.Scheme == "https" {
		if *caFile == "" || *certFile == "" || *keyFile == "" {
			return nil, nil, errors.New("--ca, --cert and --key are required for an https server (or set XENHA_CA, XENHA_CERT, XENHA_KEY)")
		}
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--ca: %s holds no PEM certificate", *caFile)
		}
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.RootCAs, tc.Certificates = pool, []tls.Certificate{pair}
		// Members' certificates name their member ID, not their address:
		// check the chain against the pool's CA and accept any member.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	cl.http = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	return cl, rest, nil
}

func (cl *client) usageErr(msg string) int {
	fmt.Fprintf(cl.stderr, "xenha %s: %s\nusage: xenha %s\n", cl.name, msg, cl.usage)
	return exitUsage
}

// do calls the API and decodes the answer into out, reporting errors and
// returning the exit code.
func (cl *client) do(method, path string, body, out any) int {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	return cl.doCtx(ctx, method, path, body, out)
}

func (cl *client) doCtx(ctx context.Context, method, path string, body, out any) int {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			fmt.Fprintf(cl.stderr, "xenha %s: %v\n", cl.name, err)
			return exitUsage
		}
		rd = bytes.NewReader(b)
	}
	if cl.stale && method == http.MethodGet {
		path += "?stale=1"
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.base+path, rd)
	if err != nil {
		fmt.Fprintf(cl.stderr, "xenha %s: %v\n", cl.name, err)
		return exitUsage
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.http.Do(req)
	if err != nil {
		fmt.Fprintf(cl.stderr, "xenha %s: %v\n", cl.name, err)
		return exitConnect
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e APIError
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		fmt.Fprintf(cl.stderr, "xenha %s: %s\n", cl.name, e.Error)
		return exitCodeOf(resp.StatusCode, e.Code)
	}
	if out == nil {
		return exitOK
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		fmt.Fprintf(cl.stderr, "xenha %s: reading the answer: %v\n", cl.name, err)
		return exitFailure
	}
	return exitOK
}

func exitCodeOf(status int, code string) int {
	switch {
	case status == http.StatusNotFound:
		return exitNotFound
	case status == http.StatusNotImplemented || code == "unsupported":
		return exitUnsupported
	case status == http.StatusServiceUnavailable:
		return exitUnknown
	case status == http.StatusBadRequest:
		return exitUsage
	}
	return exitFailure
}

func (cl *client) printJSON(v any) int {
	enc := json.NewEncoder(cl.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

// table prints rows under a header, aligned.
func (cl *client) table(header string, rows [][]string) int {
	tw := tabwriter.NewWriter(cl.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return exitFailure
	}
	return exitOK
}

// get reads path into out and prints it as JSON or with human.
func get[T any](cl *client, path string, args []string, nargs int, human func(T) int) int {
	if len(args) != nargs {
		return cl.usageErr("wrong number of arguments")
	}
	var out T
	if code := cl.do(http.MethodGet, path, nil, &out); code != exitOK {
		return code
	}
	if cl.json {
		return cl.printJSON(out)
	}
	return human(out)
}

func cmdStatus(cl *client, args []string) int {
	if len(args) != 0 {
		return cl.usageErr("no arguments")
	}
	var p Pool
	var hosts []*ha.Host
	var vms []*ha.VM
	for _, r := range []struct {
		path string
		out  any
	}{{"/v1/pool", &p}, {"/v1/hosts", &hosts}, {"/v1/vms", &vms}} {
		if code := cl.do(http.MethodGet, r.path, nil, r.out); code != exitOK {
			return code
		}
	}
	if cl.json {
		return cl.printJSON(map[string]any{"pool": p, "hosts": hosts, "vms": vms})
	}
	leader := p.Leader
	if leader == "" {
		leader = "none (no quorum reachable)"
	}
	fmt.Fprintf(cl.stdout, "pool %s: leader %s, %d hosts, %d VMs, %d open incidents (answered by %s at index %d)\n\n",
		p.ClusterID, leader, p.Hosts, p.VMs, p.Open, p.Member, p.Index)
	if code := hostTable(cl, hosts); code != exitOK {
		return code
	}
	fmt.Fprintln(cl.stdout)
	return vmTable(cl, vms)
}

func hostTable(cl *client, hosts []*ha.Host) int {
	var rows [][]string
	for _, h := range hosts {
		rows = append(rows, []string{h.ID, string(h.State), string(h.Role), fmt.Sprint(h.Epoch), h.Addr,
			fmt.Sprintf("%d MiB/%d vCPU", h.Capacity.MemoryKiB/1024, h.Capacity.VCPUs), h.Since.Format(time.RFC3339)})
	}
	return cl.table("HOST\tSTATE\tROLE\tEPOCH\tADDRESS\tCAPACITY\tSINCE", rows)
}

func vmTable(cl *client, vms []*ha.VM) int {
	var rows [][]string
	for _, v := range vms {
		host := v.Host
		if host == "" {
			host = "-"
		}
		rows = append(rows, []string{v.Name, vmState(v), host, string(v.Policy.Restart), fmt.Sprint(v.Policy.Priority), v.Pending})
	}
	return cl.table("VM\tSTATE\tHOST\tRESTART\tPRIORITY\tPENDING", rows)
}

func cmdHosts(cl *client, args []string) int {
	return get(cl, "/v1/hosts", args, 0, func(h []*ha.Host) int { return hostTable(cl, h) })
}

func cmdVMs(cl *client, args []string) int {
	return get(cl, "/v1/vms", args, 0, func(v []*ha.VM) int { return vmTable(cl, v) })
}

func cmdVM(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one VM")
	}
	return get(cl, "/v1/vms/"+url.PathEscape(args[0]), args, 1, func(v *ha.VM) int {
		fmt.Fprintf(cl.stdout, "VM %s (%s)\n  state:    %s\n  host:     %s (owner epoch %d)\n  observed: %s on %q at %s\n",
			v.Name, v.UUID, vmState(v), v.Host, v.OwnerEpoch, v.Observed.State, v.Observed.Host, v.Observed.Time.Format(time.RFC3339))
		fmt.Fprintf(cl.stdout, "  spec:     %d MiB, %d vCPU, MACs %s\n  policy:   restart %s, priority %d, order %d, preferred %v\n",
			v.Spec.MemoryKiB/1024, v.Spec.VCPUs, strings.Join(v.Spec.MACs, " "), v.Policy.Restart, v.Policy.Priority, v.Policy.Order, v.Policy.Preferred)
		if v.Pending != "" {
			fmt.Fprintf(cl.stdout, "  pending:  %s\n", v.Pending)
		}
		if v.MoveTo != "" {
			fmt.Fprintf(cl.stdout, "  move to:  %s\n", v.MoveTo)
		}
		return exitOK
	})
}

func cmdVolumes(cl *client, args []string) int {
	return get(cl, "/v1/volumes", args, 0, func(vs []*ha.Volume) int {
		var rows [][]string
		for _, v := range vs {
			rows = append(rows, []string{v.ID, v.Kind, v.Writer, fmt.Sprint(v.Generation)})
		}
		return cl.table("VOLUME\tKIND\tWRITER\tGENERATION", rows)
	})
}

func cmdIncidents(cl *client, args []string) int {
	return get(cl, "/v1/incidents", args, 0, func(incs []*ha.Incident) int {
		var rows [][]string
		for _, inc := range incs {
			state, took := "open", "-"
			if !inc.Closed.IsZero() {
				state, took = "closed", inc.Duration().Round(time.Millisecond).String()
			}
			var phases []string
			for _, p := range inc.Phases {
				phases = append(phases, fmt.Sprintf("%s %v", p.Name, p.Duration().Round(time.Millisecond)))
			}
			rows = append(rows, []string{inc.ID, inc.Host, state, inc.Opened.Format(time.RFC3339), took,
				fmt.Sprint(len(inc.VMs)), strings.Join(phases, ", ")})
		}
		return cl.table("INCIDENT\tHOST\tSTATE\tOPENED\tTOOK\tVMS\tPHASES", rows)
	})
}

func eventLine(ev ha.Event) string {
	s := ev.Time.Format(time.RFC3339Nano) + " " + string(ev.Kind)
	if ev.Host != "" {
		s += " host=" + ev.Host
	}
	if ev.VM != "" {
		s += " vm=" + ev.VM
	}
	if ev.Message != "" {
		s += " " + ev.Message
	}
	return s
}

func cmdEvents(cl *client, args []string) int {
	if len(args) != 0 {
		return cl.usageErr("no arguments")
	}
	if !cl.follow {
		return get(cl, "/v1/events", args, 0, func(evs []ha.Event) int {
			for _, ev := range evs {
				fmt.Fprintln(cl.stdout, eventLine(ev))
			}
			return exitOK
		})
	}
	req, err := http.NewRequest(http.MethodGet, cl.base+"/v1/events?follow=1", nil)
	if err != nil {
		return cl.usageErr(err.Error())
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := cl.http.Do(req)
	if err != nil {
		fmt.Fprintf(cl.stderr, "xenha events: %v\n", err)
		return exitConnect
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(cl.stderr, "xenha events: %s\n", resp.Status)
		return exitCodeOf(resp.StatusCode, "")
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if cl.json {
			fmt.Fprintln(cl.stdout, data)
			continue
		}
		var ev ha.Event
		if json.Unmarshal([]byte(data), &ev) == nil {
			fmt.Fprintln(cl.stdout, eventLine(ev))
		}
	}
	fmt.Fprintln(cl.stderr, "xenha events: the member closed the stream")
	return exitConnect
}

// act runs a write and, with --wait, polls until done(state) says the
// action completed, printing progress lines to stderr.
func (cl *client) act(method, path string, body any, done func(s *waitState) (bool, string)) int {
	if code := cl.do(method, path, body, nil); code != exitOK {
		return code
	}
	if !cl.wait || done == nil {
		return cl.result("accepted")
	}
	deadline := time.Now().Add(cl.timeout)
	last := ""
	for {
		var s waitState
		code := cl.do(http.MethodGet, "/v1/hosts", nil, &s.hosts)
		if code == exitOK {
			code = cl.do(http.MethodGet, "/v1/vms", nil, &s.vms)
		}
		if code == exitOK {
			ok, progress := done(&s)
			if progress != last {
				fmt.Fprintf(cl.stderr, "xenha %s: %s\n", cl.name, progress)
				last = progress
			}
			if s.failed != "" {
				fmt.Fprintf(cl.stderr, "xenha %s: %s\n", cl.name, s.failed)
				return exitFailure
			}
			if ok {
				return cl.result("done")
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(cl.stderr, "xenha %s: not done after %v (the pool accepted it and carries on): %s\n", cl.name, cl.timeout, last)
			return exitTimeout
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (cl *client) result(s string) int {
	if cl.json {
		return cl.printJSON(map[string]string{"result": s})
	}
	fmt.Fprintf(cl.stdout, "%s: %s\n", cl.name, s)
	return exitOK
}

// waitState is what --wait polls.
type waitState struct {
	hosts []*ha.Host
	vms   []*ha.VM
	// failed, set by a wait condition, says why what it waits for will
	// not happen: the wait ends at once with exit 1.
	failed string
}

func (s *waitState) host(id string) *ha.Host {
	for _, h := range s.hosts {
		if h.ID == id {
			return h
		}
	}
	return nil
}

func (s *waitState) vm(name string) *ha.VM {
	for _, v := range s.vms {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func running(v *ha.VM, host string) bool {
	return v != nil && v.Host == host && v.Observed.Host == host && vmState(v) == "running"
}

func cmdFence(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one host")
	}
	h := args[0]
	return cl.act(http.MethodPost, "/v1/hosts/"+url.PathEscape(h)+"/fence", struct{}{}, func(s *waitState) (bool, string) {
		st := s.host(h)
		if st == nil {
			return false, "host " + h + " is gone"
		}
		return st.State == ha.HostFenced, "host " + h + " is " + string(st.State)
	})
}

func cmdMaintenance(cl *client, args []string) int {
	if len(args) != 2 || (args[1] != "on" && args[1] != "off") {
		return cl.usageErr("name a host and on or off")
	}
	h, on := args[0], args[1] == "on"
	return cl.act(http.MethodPost, "/v1/hosts/"+url.PathEscape(h)+"/maintenance", MaintenanceRequest{On: on}, func(s *waitState) (bool, string) {
		st := s.host(h)
		if st == nil {
			return false, "host " + h + " is gone"
		}
		if !on {
			return st.State == ha.HostOnline, "host " + h + " is " + string(st.State)
		}
		left := 0
		for _, v := range s.vms {
			if v.Host == h || v.Observed.Host == h && v.Observed.State.Active() {
				left++
			}
		}
		return st.State == ha.HostMaintenance && left == 0, fmt.Sprintf("host %s is %s, %d VMs still on it", h, st.State, left)
	})
}

func cmdMigrate(cl *client, args []string) int {
	if len(args) != 2 {
		return cl.usageErr("name a VM and a host")
	}
	vm, to := args[0], args[1]
	return cl.act(http.MethodPost, "/v1/vms/"+url.PathEscape(vm)+"/migrate", MigrateRequest{Host: to}, func(s *waitState) (bool, string) {
		v := s.vm(vm)
		if v == nil {
			return false, "VM " + vm + " is gone"
		}
		if f := v.MigrateFailed; f != nil && f.To == to && v.Host != to {
			s.failed = fmt.Sprintf("live migration of %s to %s failed; it still runs on %s: %s", vm, to, f.From, f.Error)
		}
		return running(v, to), fmt.Sprintf("VM %s is %s on %q", vm, vmState(v), v.Host)
	})
}

// readJSONFile reads FILE (or stdin for -) strictly into v.
func readJSONFile(path string, v any) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(io.LimitReader(r, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func cmdPutVM(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one file")
	}
	var vm ha.VM
	if err := readJSONFile(args[0], &vm); err != nil {
		return cl.usageErr(err.Error())
	}
	if vm.Name == "" {
		return cl.usageErr(args[0] + ": name: missing")
	}
	return cl.act(http.MethodPut, "/v1/vms/"+url.PathEscape(vm.Name), vm, func(s *waitState) (bool, string) {
		v := s.vm(vm.Name)
		if v == nil {
			return false, "VM " + vm.Name + " not applied yet"
		}
		return vm.Stopped || running(v, v.Host), fmt.Sprintf("VM %s is %s on %q", vm.Name, vmState(v), v.Host)
	})
}

// cmdRemoveVM deletes a VM from the pool. The pool stops a VM that runs
// first and removes it once its host reported it stopped; --wait waits
// until it is gone.
func cmdRemoveVM(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one VM")
	}
	name := args[0]
	return cl.act(http.MethodDelete, "/v1/vms/"+url.PathEscape(name), nil, func(s *waitState) (bool, string) {
		if v := s.vm(name); v != nil {
			return false, fmt.Sprintf("VM %s still listed: %s", name, v.Pending)
		}
		return true, "VM " + name + " removed"
	})
}

func cmdPutVolume(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one file")
	}
	var v ha.Volume
	if err := readJSONFile(args[0], &v); err != nil {
		return cl.usageErr(err.Error())
	}
	if v.ID == "" {
		return cl.usageErr(args[0] + ": ID: missing")
	}
	return cl.act(http.MethodPut, "/v1/volumes/"+url.PathEscape(v.ID), v, nil)
}

func cmdRemoveVolume(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one volume")
	}
	return cl.act(http.MethodDelete, "/v1/volumes/"+url.PathEscape(args[0]), nil, nil)
}

func cmdRemoveHost(cl *client, args []string) int {
	if len(args) != 1 {
		return cl.usageErr("name one host")
	}
	h := args[0]
	return cl.act(http.MethodDelete, "/v1/hosts/"+url.PathEscape(h), nil, func(s *waitState) (bool, string) {
		st := s.host(h)
		if st == nil || st.State == ha.HostLeft {
			return true, "host " + h + " removed"
		}
		return false, "host " + h + " is " + string(st.State)
	})
}
