// Command witness is the third vote of a two-host pool (a pool needs three
// voters so that it keeps a majority when one host dies): a
// xenha member with RoleWitness, which votes in Raft and runs no VMs, so
// that either host can fail without the other losing quorum. It needs no
// hypervisor, guard or storage, and may run on any small machine that both
// hosts reach, a management VM or a Raspberry Pi.
//
// It is the smallest useful embedder: copy it to see what every xenha
// program does: build an ha.Config (a profile, identity, mutual TLS), New,
// Join once, Close on exit. Take examples/internal/member along (the join
// token, the event log, the close with a deadline, about sixty lines); the
// TLS files are read by ha/pki's LoadFiles.
//
//	witness -id witness -data /var/lib/xenha-witness -bind 198.18.0.3:7946 \
//	    -join 198.18.0.1:7946,198.18.0.2:7946 -token-file /etc/xenha/token \
//	    -ca /etc/xenha/ca.pem -cert /etc/xenha/witness.pem -key /etc/xenha/witness.key
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

	"github.com/xenha/xenha/examples/internal/member"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

func main() {
	id := flag.String("id", "witness", "member ID (its certificate must name it)")
	cluster := flag.String("cluster", "xenha", "cluster ID")
	data := flag.String("data", "/var/lib/xenha-witness", "data directory (Raft log)")
	bind := flag.String("bind", "", "address to listen on, host:port")
	join := flag.String("join", "", "comma-separated addresses of members to join through (first start only)")
	tokenFile := flag.String("token-file", "", "file holding the pool's join token")
	ca := flag.String("ca", "", "CA certificate (PEM)")
	cert := flag.String("cert", "", "this member's certificate (PEM)")
	key := flag.String("key", "", "this member's key (PEM)")
	fast := flag.Bool("fastlan", false, "use the FastLAN profile (must match the hosts')")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *id, *cluster, *data, *bind, *join, *tokenFile, *ca, *cert, *key, *fast, nil); err != nil {
		fmt.Fprintln(os.Stderr, "witness:", err)
		os.Exit(1)
	}
}

// run is the witness's life; ready, if set, is called once it votes.
func run(ctx context.Context, log *slog.Logger, id, cluster, data, bind, join, tokenFile, caFile, certFile, keyFile string, fast bool, ready func()) error {
	cfg := ha.DefaultConfig()
	if fast {
		cfg = ha.FastLAN()
	}
	cfg.ID, cfg.ClusterID, cfg.DataDir, cfg.BindAddr = id, cluster, data, bind
	cfg.Role, cfg.Logger = ha.RoleWitness, log
	token, err := member.ReadJoinToken(tokenFile)
	if err != nil {
		return fmt.Errorf("-token-file: %w", err)
	}
	cfg.JoinToken = token
	if cfg.TLS, err = pki.LoadFiles(caFile, certFile, keyFile); err != nil {
		return fmt.Errorf("-ca, -cert, -key: %w", err)
	}

	c, err := ha.New(ctx, cfg) // validates cfg and names the field to fix
	if err != nil {
		return err
	}
	defer member.Close(c, log)
	if c.Fresh() {
		if join == "" {
			return fmt.Errorf("no state in %s and no -join: give the hosts' addresses", data)
		}
		if err := c.Join(ctx, strings.Split(join, ",")...); err != nil {
			return err
		}
	}
	log.Info("witness voting", "id", id, "addr", c.Addr())
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	return nil
}
