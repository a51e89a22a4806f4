// Command demo is `make demo`: a three-host xenha pool in one process, with
// no configuration, no extra machines and no internet. Each host is a real
// ha.Cluster member (loopback TCP, mutual TLS from an ephemeral CA, bbolt in
// a temporary directory) with its own libvirt test-driver hypervisor, its
// own in-process IPMI BMC (fence/ipmi/ipmitest) that the others fence it
// through, and a network guard: nftables in a network namespace per host
// when run as root, a fake otherwise. Volumes live on shared fake storage.
//
// It protects a dozen VMs (two databases kept apart by anti-affinity and
// restarted first, web servers, best-effort batch workers), pulls the plug
// on a follower and then on the leader, shows the pool as it changes, and
// ends with each incident's timeline (detect, fence, place, storage, start,
// in milliseconds) and a verdict. It exits 1 if a VM was lost or ran on two
// hosts at once, 2 if it could not run.
//
// For embedders, pool.go shows the wiring of one host (host.start) and
// scenario.go the calls an operator tool makes (PutVolume, PutVM, State,
// Incidents).
//
//	go run ./examples/demo                      # 3 hosts, 12 VMs, follower then leader
//	go run ./examples/demo -hosts 5 -vms 30 -victims h2,leader,h4
//	go run ./examples/demo -json > summary.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xenha/xenha/ha"
)

func main() {
	hosts := flag.Int("hosts", 3, "simulated hosts (at least 3)")
	vms := flag.Int("vms", 12, "protected VMs")
	victims := flag.String("victims", "follower,leader", "comma-separated hosts to pull the plug on, in order: follower, leader or a host ID (h1, h2, ...)")
	restore := flag.Bool("restore", true, "power each victim back on once its VMs run elsewhere")
	jsonOut := flag.Bool("json", false, "print the summary as JSON on stdout (the live view goes to stderr)")
	guard := flag.String("guard", "auto", "network guard: auto (nftables in netns when root), nft, fake")
	wait := flag.Duration("wait", 30*time.Second, "longest wait for the pool to settle at each step")
	verbose := flag.Bool("v", false, "log the members' own messages to stderr")
	profile := flag.String("profile", "fastlan", "member timings: fastlan (suspect after 400 ms, lease 800 ms) or default (5 s, 8 s)")
	flag.Parse()

	o := Options{Hosts: *hosts, VMs: *vms, Restore: *restore, Wait: *wait}
	switch *profile {
	case "fastlan":
		o.Profile = ha.FastLAN()
	case "default":
		o.Profile = ha.DefaultConfig()
	default:
		fmt.Fprintf(os.Stderr, "demo: -profile %q: use fastlan or default\n", *profile)
		os.Exit(2)
	}
	for _, v := range strings.Split(*victims, ",") {
		if v = strings.TrimSpace(v); v != "" {
			o.Victims = append(o.Victims, v)
		}
	}
	can, why := canNetNS()
	switch *guard {
	case "auto":
		o.NetNS = can
	case "nft":
		if !can {
			fmt.Fprintf(os.Stderr, "demo: -guard nft needs network namespaces: %s\n", why)
			os.Exit(2)
		}
		o.NetNS = true
	case "fake":
	default:
		fmt.Fprintf(os.Stderr, "demo: -guard %q: use auto, nft or fake\n", *guard)
		os.Exit(2)
	}
	out := os.Stdout
	o.View = os.Stdout
	if *jsonOut {
		o.View = os.Stderr
	}
	o.Terminal = isTerminal(o.View.(*os.File))
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.Terminal = false // logs would tear the table apart
	}
	if o.NetNS {
		fmt.Fprintln(o.View, "network guard: nftables in one network namespace per host")
	} else {
		fmt.Fprintf(o.View, "network guard: in-memory fake (%s; run as root for nftables)\n", orDefault(why, "chosen"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *jsonOut {
		if err := sum.WriteJSON(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	} else {
		sum.WriteText(out)
	}
	if !sum.OK {
		os.Exit(1)
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
