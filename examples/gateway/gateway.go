package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/netguard"
)

// Gateway is one gateway VM's network identity. It is the same on both
// hosts: each host runs its own copy of the gateway with this MAC and these
// addresses, and only the active host's copy may be on the network.
type Gateway struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac"`
	Addrs []string `json:"addrs"`
	// Port optionally names the gateway's bridge port (vif3.0) on each host.
	Port string `json:"port,omitempty"`
}

// loadGateways reads a JSON list of gateways.
func loadGateways(path string) ([]Gateway, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var gws []Gateway
	if err := dec.Decode(&gws); err != nil {
		return nil, fmt.Errorf("gateways file %s: %w", path, err)
	}
	if err := checkGateways(gws); err != nil {
		return nil, fmt.Errorf("gateways file %s: %w", path, err)
	}
	return gws, nil
}

func checkGateways(gws []Gateway) error {
	if len(gws) == 0 {
		return fmt.Errorf("no gateways: list at least one {name, mac, addrs}")
	}
	names, macs := map[string]bool{}, map[string]bool{}
	for i, g := range gws {
		if g.Name == "" || names[g.Name] {
			return fmt.Errorf("gateway %d: name %q is empty or repeated", i, g.Name)
		}
		names[g.Name] = true
		mac, err := net.ParseMAC(g.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("gateway %s: MAC %q is not an Ethernet address", g.Name, g.MAC)
		}
		if macs[mac.String()] {
			return fmt.Errorf("gateway %s: MAC %s is used by another gateway", g.Name, mac)
		}
		macs[mac.String()] = true
		for _, a := range g.Addrs {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("gateway %s: address %q: %v", g.Name, a, err)
			}
		}
	}
	return nil
}

// roleName is the protected VM that stands for gateway g's active role.
func roleName(g Gateway) string { return "gw-" + g.Name }

// roleVMs are the VMs xenha protects: one active role per gateway, so that
// each announces only its own addresses from its own MAC. preferred names
// the host that should be active while it is up (the seeds' XEN-A);
// without failback the role stays where it moved, as Heartbeat's
// auto_failback off.
func roleVMs(gws []Gateway, preferred string) []ha.VM {
	var out []ha.VM
	for i, g := range gws {
		name := roleName(g)
		// The same name gives the same UUID on every host and every run.
		b := sha256.Sum256([]byte(name))
		b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
		uuid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		pol := ha.Policy{Restart: ha.RestartAlways, Priority: 100, Order: i, MaxLocalRestarts: 3}
		if preferred != "" {
			pol.Preferred = []string{preferred}
		}
		out = append(out, ha.VM{
			Name: name, UUID: uuid, Policy: pol,
			Spec: ha.VMSpec{
				DomainXML: fmt.Sprintf("<domain type='xen'><name>%s</name><uuid>%s</uuid><memory unit='KiB'>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>", name, uuid),
				MemoryKiB: 1024, VCPUs: 1,
				MACs:  []string{g.MAC},
				Addrs: append([]string(nil), g.Addrs...),
			},
		})
	}
	return out
}

// blockGateways blocks every gateway on this host before the member starts:
// until the cluster says this host is active, its copies stay off the
// network, whatever a previous run left.
func blockGateways(ctx context.Context, g netguard.Guard, gws []Gateway) error {
	var st netguard.State
	for _, gw := range gws {
		mac, err := net.ParseMAC(gw.MAC)
		if err != nil {
			return err
		}
		st.Rules = append(st.Rules, netguard.Rule{VIF: netguard.VIF{VM: roleName(gw), MAC: mac, Port: gw.Port}})
	}
	st.Mode = netguard.BlockAll
	return g.Apply(ctx, st)
}

// member is one member of the pair (or the witness).
type member struct {
	c    *ha.Cluster
	role *role // nil on the witness
}

// startMember starts a gateway host (cfg.Guard set, Role voter) or the
// witness (no Guard, Role witness) from cfg, which carries identity, TLS,
// timings and the fencer.
func startMember(ctx context.Context, cfg ha.Config, gws []Gateway) (*member, error) {
	m := &member{}
	if cfg.Role != ha.RoleWitness {
		if cfg.Guard == nil {
			return nil, fmt.Errorf("gateway host %s: no network guard: the gateways' traffic could not be blocked", cfg.ID)
		}
		if err := blockGateways(ctx, cfg.Guard, gws); err != nil {
			return nil, fmt.Errorf("gateway host %s: block the gateways before joining: %w", cfg.ID, err)
		}
		m.role = newRole(cfg.ID)
		cfg.Hypervisor = m.role
		cfg.IsolationResponse = ha.IsolationResponse{Action: ha.IsolatePause}
	}
	c, err := ha.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m.c = c
	return m, nil
}

// protect puts the gateways' roles under xenha's protection (idempotent).
func protect(ctx context.Context, c *ha.Cluster, gws []Gateway, preferred string) error {
	for _, vm := range roleVMs(gws, preferred) {
		if err := c.PutVM(ctx, vm); err != nil {
			return fmt.Errorf("protect %s: %w", vm.Name, err)
		}
	}
	return nil
}
