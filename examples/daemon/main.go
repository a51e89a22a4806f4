// Command daemon is the smallest xenha host daemon: what runs on every dom0
// of a pool, read from one JSON file (examples/internal/hostd documents the
// format; its testdata/xen-a.json is a sample). It forms or joins the pool,
// logs the cluster's events, and leaves cleanly on SIGINT or SIGTERM.
// examples/xenha is the same daemon with an HTTP API, metrics, a status page,
// a CLI and a CA; this one shows how little an embedder needs.
//
//	daemon -config /etc/xenha/daemon.json          # run
//	daemon -config /etc/xenha/daemon.json -check   # only check the file
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/xenha/xenha/examples/internal/hostd"
)

func main() {
	path := flag.String("config", "/etc/xenha/daemon.json", "configuration file (JSON)")
	check := flag.Bool("check", false, "check the configuration file and exit")
	verbose := flag.Bool("v", false, "log at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f, err := hostd.LoadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *check {
		fmt.Printf("%s: ok (host %s, pool %s)\n", *path, f.ID, f.ClusterID)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := hostd.Run(ctx, f, log, nil); err != nil {
		log.Error("daemon stopped", "err", err)
		os.Exit(1)
	}
}
