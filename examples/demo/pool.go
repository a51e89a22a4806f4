package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/xenha/xenha/examples/internal/powercut"
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/ipmi/ipmitest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/netguard/nft"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
	"github.com/xenha/xenha/xenctl/libvirt"
)

// A pool is N simulated hosts in this process. Each is what a dom0 would
// be: a real ha.Cluster member on loopback TCP with mutual TLS and a bbolt
// log, a libvirt hypervisor (the test driver: a private host per XML file),
// a BMC that fences it over IPMI, and a network guard. Powering a host off
// through its BMC stops its member and its hypervisor, so its domains
// vanish as they would with the power cut.

// hostXML describes each simulated host to libvirt's test driver.
const hostXML = `<node>
  <cpu><mhz>2400</mhz><model>Skylake</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>
`

// storageKind is the Volume.Kind of the demo's shared fake storage.
const storageKind = storagetest.Kind

type pool struct {
	dir     string
	log     *slog.Logger
	ca      *pki.CA
	token   string
	store   *storagetest.Store
	hosts   []*host
	bmcs    map[string]*ipmitest.BMC
	netns   bool // real nftables in a namespace per host
	prefix  string
	profile ha.Config
}

type host struct {
	p   *pool
	id  string
	dir string
	xml string
	bmc *ipmitest.BMC

	net *powercut.Network // the host's cluster traffic, cut with the power

	mu     sync.Mutex
	closed chan struct{} // closed when the last member's orderly Close ended
	addr   string        // fixed at first start: peers know the member by it
	member *ha.Cluster
	hv     *libvirt.Hypervisor
	guard  netguard.Guard
	nsFile *os.File
	up     bool
}

// newPool builds and starts n hosts and forms the cluster.
func newPool(ctx context.Context, n int, netns bool, profile ha.Config, log *slog.Logger) (*pool, error) {
	dir, err := os.MkdirTemp("", "xenha-demo-")
	if err != nil {
		return nil, err
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	p := &pool{dir: dir, log: log, token: hex.EncodeToString(tok[:]), store: storagetest.NewStore(),
		bmcs: map[string]*ipmitest.BMC{}, netns: netns, profile: profile, prefix: fmt.Sprintf("xd%d", os.Getpid())}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if p.ca, err = pki.NewCA("demo"); err != nil {
		return nil, err
	}
	for i := range n {
		h := &host{p: p, id: fmt.Sprintf("h%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("h%d", i+1)), net: powercut.New()}
		if err := os.MkdirAll(h.dir, 0o700); err != nil {
			return nil, err
		}
		h.xml = filepath.Join(h.dir, "host.xml")
		if err := os.WriteFile(h.xml, []byte(hostXML), 0o600); err != nil {
			return nil, err
		}
		if h.bmc, err = ipmitest.Start(ipmitest.WithPowerHook(h.power)); err != nil {
			return nil, err
		}
		p.bmcs[h.id] = h.bmc
		if netns {
			if err := h.makeNetNS(ctx); err != nil {
				return nil, err
			}
		}
		p.hosts = append(p.hosts, h)
	}
	for i, h := range p.hosts {
		if err := h.start(ctx); err != nil {
			return nil, err
		}
		m := h.cluster()
		if i == 0 {
			err = m.Bootstrap(ctx)
		} else {
			err = m.Join(ctx, p.hosts[0].addr)
		}
		if err != nil {
			return nil, fmt.Errorf("form the pool: %w", err)
		}
	}
	ok = true
	return p, nil
}

// fencer is what every member fences its peers with: one IPMI level that
// knows every host's BMC, in a chain so that attempts are recorded.
func (p *pool) fencer() (fence.Fencer, error) {
	targets := map[string]ipmi.Target{}
	for id, b := range p.bmcs {
		targets[id] = b.Target()
	}
	f, err := ipmi.New(targets, ipmi.WithPasswords(ipmitest.Passwords(p.bmcs)),
		ipmi.WithPollInterval(20*time.Millisecond), ipmi.WithExchangeTimeout(300*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return fence.NewChain([]fence.Level{{Method: "ipmi", Fencer: f, Timeout: 5 * time.Second}})
}

// start powers the host up: a fresh hypervisor (a rebooted host runs no
// domains) and its member, on its data directory.
func (h *host) start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up {
		return nil
	}
	if h.closed != nil {
		// The previous member must have let go of its data directory.
		select {
		case <-h.closed:
		case <-ctx.Done():
			return fmt.Errorf("host %s: previous member still closing: %w", h.id, ctx.Err())
		}
	}
	h.net.Restore()
	hv, err := libvirt.Open(ctx, "test://"+h.xml, libvirt.WithLogger(h.p.log))
	if err != nil {
		return fmt.Errorf("host %s: hypervisor: %w", h.id, err)
	}
	switch {
	case h.guard != nil: // made at first power-on; its namespace outlives the member
	case h.nsFile != nil:
		if h.guard, err = nft.New(nft.WithNetNS(int(h.nsFile.Fd())), nft.WithLogger(h.p.log)); err != nil {
			hv.Close()
			return err
		}
	default:
		h.guard = netguardtest.New()
	}
	f, err := h.p.fencer()
	if err != nil {
		hv.Close()
		return err
	}
	tlsCfg, err := h.p.ca.Member(h.id)
	if err != nil {
		hv.Close()
		return err
	}
	cfg := h.p.profile
	cfg.ID, cfg.ClusterID, cfg.DataDir = h.id, "demo", filepath.Join(h.dir, "data")
	cfg.BindAddr = h.addr
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	cfg.JoinToken, cfg.TLS, cfg.Logger = h.p.token, tlsCfg, h.p.log
	cfg.Network = h.net
	cfg.Hypervisor, cfg.Fencer, cfg.Guard = hv, f, h.guard
	cfg.Storage = map[string]storage.Backend{storageKind: h.p.store.Backend(h.id)}
	m, err := ha.New(ctx, cfg)
	if err != nil {
		hv.Close()
		return fmt.Errorf("host %s: %w", h.id, err)
	}
	h.member, h.hv, h.addr, h.up = m, hv, m.Addr(), true
	return nil
}

// power is the BMC's hook: the chassis power is the host's life.
func (h *host) power(on bool) {
	if on {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.start(ctx); err != nil {
			h.p.log.Error("power on failed", "host", h.id, "err", err)
		}
		return
	}
	h.stop()
}

// stop is the power cut: the member falls silent and the domains vanish at
// once; the member's orderly Close (releasing its data directory) follows
// in the background, as the next power-on waits for it.
func (h *host) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up {
		return
	}
	h.up = false
	h.net.Cut()
	h.hv.Close()
	m, closed := h.member, make(chan struct{})
	h.closed = closed
	go func() {
		defer close(closed)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	}()
}

// wait blocks until the host's last member has closed.
func (h *host) wait() {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed != nil {
		<-closed
	}
}

// cluster is the host's member while it is up, else nil.
func (h *host) cluster() *ha.Cluster {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up {
		return nil
	}
	return h.member
}

func (h *host) isUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up
}

// executing lists the domains that execute on this host now (none while it
// is off).
func (h *host) executing(ctx context.Context) ([]string, error) {
	h.mu.Lock()
	hv, up := h.hv, h.up
	h.mu.Unlock()
	if !up {
		return nil, nil
	}
	doms, err := hv.Domains(ctx)
	if err != nil {
		if !h.isUp() {
			return nil, nil // powered off meanwhile
		}
		return nil, err
	}
	var out []string
	for _, d := range doms {
		if d.State.Executing() {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

// makeNetNS gives the host its own network namespace for its nftables
// guard, as a separate dom0 would have.
func (h *host) makeNetNS(ctx context.Context) error {
	name := fmt.Sprintf("%s-%s", h.p.prefix, h.id)
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("host %s: ip netns add %s: %v: %s", h.id, name, err, out)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		return fmt.Errorf("host %s: open netns: %w", h.id, err)
	}
	h.nsFile = f
	return nil
}

// live returns a member that is up, preferring the leader.
func (p *pool) live() *ha.Cluster {
	var any *ha.Cluster
	for _, h := range p.hosts {
		if m := h.cluster(); m != nil {
			if m.IsLeader() {
				return m
			}
			if any == nil {
				any = m
			}
		}
	}
	return any
}

// leader returns the host that leads, if any.
func (p *pool) leader() *host {
	for _, h := range p.hosts {
		if m := h.cluster(); m != nil && m.IsLeader() {
			return h
		}
	}
	return nil
}

func (p *pool) host(id string) *host {
	for _, h := range p.hosts {
		if h.id == id {
			return h
		}
	}
	return nil
}

// close powers everything down and removes what the pool created.
func (p *pool) close() {
	var wg sync.WaitGroup
	for _, h := range p.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.stop(); h.wait() }()
	}
	wg.Wait()
	for _, h := range p.hosts {
		if h.bmc != nil {
			h.bmc.Close()
		}
		if h.nsFile != nil {
			h.nsFile.Close()
			_ = exec.Command("ip", "netns", "del", fmt.Sprintf("%s-%s", p.prefix, h.id)).Run()
		}
	}
	_ = os.RemoveAll(p.dir)
}

// canNetNS reports whether the demo can put nftables guards in network
// namespaces: root and the ip tool.
func canNetNS() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "no ip command"
	}
	return true, ""
}
