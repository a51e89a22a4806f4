// Command gateway is the seeds' active/passive gateway pair
// (seeds/004: two Xen hosts each running the same dozen gateway VMs, with
// iptables + arptables blocking them on the passive host and Heartbeat
// switching the block) done with xenha.
//
// Each gateway host runs this program next to its gateway domains, which
// Xen keeps running on both hosts. xenha protects one small VM per gateway,
// its active role (see role.go): the host the cluster assigns a role to
// unblocks that gateway's MAC in its nftables bridge table and announces
// its addresses with a gratuitous ARP; the other host keeps it blocked (IP,
// ARP and everything else, by MAC, so a rebooted gateway with a new vif is
// still blocked). When the active host dies, the witness and the passive
// host fence it through its BMC and the passive host unblocks in about a
// second with the FastLAN profile. A third machine runs the witness (-witness),
// so that either host can fail without the other losing quorum.
//
// Embedders copy gateway.go (roles, blocking before joining, protect) and
// role.go (a Hypervisor whose "domain" is a role).
//
//	gateway -id xen-a -bootstrap -bind 198.18.0.1:7946 -bridge xenbr0 -gateways gw.json \
//	    -token-file token -ca ca.pem -cert xen-a.pem -key xen-a.key \
//	    -bmc xen-b=198.18.10.2:623 -bmc-user fencer -bmc-password-dir /etc/xenha/bmc
//	gateway -id xen-b -join 198.18.0.1:7946 ...
//	gateway -id witness -witness -join 198.18.0.1:7946 ...
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	program "github.com/xenha/xenha/examples/internal/member" // gateway.go has a type member
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
	"github.com/xenha/xenha/netguard/nft"
)

// bmcFlags collects -bmc host=address:port.
type bmcFlags map[string]ipmi.Target

func (b bmcFlags) String() string { return fmt.Sprint(map[string]ipmi.Target(b)) }

func (b bmcFlags) Set(s string) error {
	host, addr, ok := strings.Cut(s, "=")
	if !ok || host == "" {
		return fmt.Errorf("want host=address[:port], got %q", s)
	}
	t := ipmi.Target{Address: addr}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("port in %q: %v", s, err)
		}
		t.Address, t.Port = h, port
	}
	b[host] = t
	return nil
}

func main() {
	id := flag.String("id", "", "member ID")
	cluster := flag.String("cluster", "gateways", "cluster ID")
	data := flag.String("data", "/var/lib/xenha-gateway", "data directory")
	bind := flag.String("bind", "", "address to listen on, host:port")
	bootstrap := flag.Bool("bootstrap", false, "form the pool (first host, first start only)")
	join := flag.String("join", "", "comma-separated members to join through (first start only)")
	witness := flag.Bool("witness", false, "run as the witness: vote, run no gateways")
	tokenFile := flag.String("token-file", "", "file holding the join token")
	ca := flag.String("ca", "", "CA certificate (PEM)")
	cert := flag.String("cert", "", "member certificate (PEM)")
	key := flag.String("key", "", "member key (PEM)")
	bridge := flag.String("bridge", "xenbr0", "bridge the gateways are on (announcements go there)")
	table := flag.String("table", "xenha", "nftables bridge table this program owns")
	gwFile := flag.String("gateways", "", "JSON list of gateways: [{\"name\", \"mac\", \"addrs\"}]")
	preferred := flag.String("preferred", "", "host that should be active while it is up")
	bmcs := bmcFlags{}
	flag.Var(bmcs, "bmc", "host=address[:port] of a host's BMC; repeat for each host")
	bmcUser := flag.String("bmc-user", "fencer", "BMC user")
	bmcPwDir := flag.String("bmc-password-dir", "/etc/xenha/bmc", "directory with one password file per host, named by host ID")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := func() error {
		gws, err := loadGateways(*gwFile)
		if err != nil {
			return err
		}
		cfg := ha.FastLAN()
		cfg.ID, cfg.ClusterID, cfg.DataDir, cfg.BindAddr, cfg.Logger = *id, *cluster, *data, *bind, log
		if cfg.TLS, err = pki.LoadFiles(*ca, *cert, *key); err != nil {
			return fmt.Errorf("-ca, -cert, -key: %w", err)
		}
		if cfg.JoinToken, err = program.ReadJoinToken(*tokenFile); err != nil {
			return fmt.Errorf("-token-file: %w", err)
		}
		if len(bmcs) > 0 {
			for h, t := range bmcs {
				t.User, t.PasswordFile = *bmcUser, filepath.Join(*bmcPwDir, h)
				bmcs[h] = t
			}
			f, err := ipmi.New(bmcs, ipmi.WithLogger(log))
			if err != nil {
				return err
			}
			if cfg.Fencer, err = fence.NewChain([]fence.Level{{Method: "ipmi", Fencer: f}}); err != nil {
				return err
			}
		}
		if *witness {
			cfg.Role = ha.RoleWitness
		} else if cfg.Guard, err = nft.New(nft.WithTable(*table), nft.WithBridge(*bridge), nft.WithLogger(log)); err != nil {
			return err
		}
		m, err := startMember(ctx, cfg, gws)
		if err != nil {
			return err
		}
		defer program.Close(m.c, log)
		if m.c.Fresh() {
			switch {
			case *bootstrap:
				err = m.c.Bootstrap(ctx)
			case *join != "":
				err = m.c.Join(ctx, strings.Split(*join, ",")...)
			default:
				err = fmt.Errorf("no state in %s: give -bootstrap (first host) or -join", *data)
			}
			if err != nil {
				return err
			}
		}
		if err := protect(ctx, m.c, gws, *preferred); err != nil {
			return err
		}
		program.LogEvents(ctx, log, m.c.Subscribe(ctx))
		return nil
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}
