package nft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/xenha/xenha/netguard"
)

// Names inside the table. They are part of the on-kernel format: a guard
// reads back what an earlier process (perhaps an older version) left.
const (
	setGuarded  = "guarded"
	setAllowed  = "allowed"
	setGPorts   = "guarded_ports"
	setAPorts   = "allowed_ports"
	chainFwd    = "forward"
	chainInput  = "input"
	chainOutput = "output"
)

// Fixed set IDs make the batch byte-for-byte reproducible (the library would
// otherwise number sets from a process-wide counter).
const (
	idGuarded = 1
	idAllowed = 2
	idGPorts  = 3
	idAPorts  = 4
)

// chainPriority runs the guard before anything at the bridge filter priority
// (-200), so that no other bridge rule can accept a blocked VM's frame first.
const chainPriority = -250

// maxComment bounds the metadata kept beside each guarded MAC (VM name, port,
// addresses), within the kernel's 256-byte element user data.
const maxComment = 250

// match is what a drop rule looks up: a MAC of the Ethernet header (the
// value is its offset), or the bridge port a frame leaves by.
type match uint32

const (
	etherDst match = 0
	etherSrc match = 6
	outPort  match = 100
)

// ruleset is the complete content of the guard's table for one State.
type ruleset struct {
	mode  netguard.Mode
	table *nftables.Table
	sets  []*nftables.Set
	elems [][]nftables.SetElement // per set
	// gElems and aElems are the MAC sets' elements (elems[0] and elems[1]).
	gElems, aElems []nftables.SetElement
	chains         []*nftables.Chain
	rules          []*nftables.Rule
}

// vifMeta is what the guard remembers of a VIF beside its MAC, in the set
// element's comment, so that Current can return the whole State. Short keys:
// the comment is at most maxComment bytes.
type vifMeta struct {
	VM    string       `json:"v,omitempty"`
	Port  string       `json:"p,omitempty"`
	Addrs []netip.Addr `json:"a,omitempty"`
}

func encodeMeta(v netguard.VIF) (string, error) {
	if v.VM == "" && v.Port == "" && len(v.Addrs) == 0 {
		return "", nil
	}
	b, err := json.Marshal(vifMeta{VM: v.VM, Port: v.Port, Addrs: v.Addrs})
	if err != nil {
		return "", fmt.Errorf("%w: VIF %s of VM %q: %v", netguard.ErrInvalidState, v.MAC, v.VM, err)
	}
	if len(b) > maxComment {
		return "", fmt.Errorf("%w: VIF %s of VM %q: name, port and addresses take %d bytes, the kernel keeps %d beside a MAC; shorten the name or list fewer addresses",
			netguard.ErrInvalidState, v.MAC, v.VM, len(b), maxComment)
	}
	return string(b), nil
}

// decodeMeta parses an element comment. It rejects anything the guard did not
// write, rather than inventing a VIF from it.
func decodeMeta(comment string) (vifMeta, error) {
	var m vifMeta
	if comment == "" {
		return m, nil
	}
	if len(comment) > maxComment+6 { // slack for what the kernel pads
		return m, fmt.Errorf("comment of %d bytes, longer than netguard writes", len(comment))
	}
	dec := json.NewDecoder(strings.NewReader(comment))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return vifMeta{}, fmt.Errorf("comment %q: %v", comment, err)
	}
	if dec.More() {
		return vifMeta{}, fmt.Errorf("comment %q: trailing data", comment)
	}
	return m, nil
}

// build turns a valid State into the table's content.
//
// The rules cover every bridge of the host. Scoping them to one bridge
// (meta ibrname) needs the kernel's nft_meta_bridge, which is often not
// built; MACs of guarded VMs are unique on a host, so host-wide is safe.
func build(table string, s netguard.State) (*ruleset, error) {
	rs := &ruleset{mode: s.Mode, table: &nftables.Table{Name: table, Family: nftables.TableFamilyBridge}}
	set := func(name string, id uint32, key nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: rs.table, Name: name, ID: id, KeyType: key}
	}
	rs.sets = []*nftables.Set{
		set(setGuarded, idGuarded, nftables.TypeEtherAddr),
		set(setAllowed, idAllowed, nftables.TypeEtherAddr),
		set(setGPorts, idGPorts, nftables.TypeIFName),
		set(setAPorts, idAPorts, nftables.TypeIFName),
	}
	// A port is allowed only if every VIF on it is (normally there is one).
	portAllowed := map[string]bool{}
	var ports []string
	for _, r := range s.Normalize().Rules {
		c, err := encodeMeta(r.VIF)
		if err != nil {
			return nil, err
		}
		mac := slices.Clone([]byte(r.VIF.MAC))
		rs.gElems = append(rs.gElems, nftables.SetElement{Key: mac, Comment: c})
		if r.Allow {
			rs.aElems = append(rs.aElems, nftables.SetElement{Key: mac})
		}
		if p := r.VIF.Port; p != "" {
			if len(p) > 15 || strings.ContainsRune(p, 0) {
				return nil, fmt.Errorf("%w: VIF %s of VM %q: port %q is not an interface name (at most 15 bytes)",
					netguard.ErrInvalidState, r.VIF.MAC, r.VIF.VM, p)
			}
			if a, seen := portAllowed[p]; seen {
				portAllowed[p] = a && r.Allow
			} else {
				portAllowed[p] = r.Allow
				ports = append(ports, p)
			}
		}
	}
	var gPorts, aPorts []nftables.SetElement
	for _, p := range ports {
		gPorts = append(gPorts, nftables.SetElement{Key: ifname(p)})
		if portAllowed[p] {
			aPorts = append(aPorts, nftables.SetElement{Key: ifname(p)})
		}
	}
	rs.elems = [][]nftables.SetElement{rs.gElems, rs.aElems, gPorts, aPorts}
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(chainPriority)
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		c := &nftables.Chain{Name: name, Table: rs.table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: &prio, Policy: &accept}
		rs.chains = append(rs.chains, c)
		return c
	}
	fwd := chain(chainFwd, nftables.ChainHookForward)
	in := chain(chainInput, nftables.ChainHookInput)
	out := chain(chainOutput, nftables.ChainHookOutput)
	for _, sig := range signatures(s.Mode) {
		c := map[string]*nftables.Chain{chainFwd: fwd, chainInput: in, chainOutput: out}[sig.chain]
		rs.rules = append(rs.rules, &nftables.Rule{Table: rs.table, Chain: c, Exprs: sig.exprs()})
	}
	return rs, nil
}

// ruleSig is one drop rule in shape: in which chain, what it looks up, and
// whether allowed VIFs are exempt.
type ruleSig struct {
	chain       string
	match       match
	exemptAllow bool
}

// signatures lists the drop rules of a mode. A VM's own frames carry its MAC
// as source, frames to it as destination; forward covers VM<->wire and
// VM<->VM, input VM->dom0, output dom0->VM (and dom0 forging a blocked VM's
// source). Frames flooded to every port (broadcast ARP requests, unknown
// unicast) carry no VM MAC: the port rules stop them at a blocked VM's port,
// as long as the State names it. AllowAll needs no rule at all.
func signatures(m netguard.Mode) []ruleSig {
	if m == netguard.AllowAll {
		return nil
	}
	exempt := m == netguard.PerVIF
	return []ruleSig{
		{chainFwd, etherSrc, exempt},
		{chainFwd, etherDst, exempt},
		{chainFwd, outPort, exempt},
		{chainInput, etherSrc, exempt},
		{chainOutput, etherDst, exempt},
		{chainOutput, etherSrc, exempt},
		{chainOutput, outPort, exempt},
	}
}

// exprs is the rule's expression list, one of
//
//	ether saddr|daddr @guarded [ether saddr|daddr != @allowed] drop
//	oifname @guarded_ports [oifname != @allowed_ports] drop
func (s ruleSig) exprs() []expr.Any {
	guarded, gid, allowed, aid := setGuarded, uint32(idGuarded), setAllowed, uint32(idAllowed)
	var load expr.Any = &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: uint32(s.match), Len: 6}
	if s.match == outPort {
		guarded, gid, allowed, aid = setGPorts, idGPorts, setAPorts, idAPorts
		load = &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}
	}
	e := []expr.Any{load, &expr.Lookup{SourceRegister: 1, SetName: guarded, SetID: gid}}
	if s.exemptAllow {
		e = append(e, &expr.Lookup{SourceRegister: 1, SetName: allowed, SetID: aid, Invert: true})
	}
	return append(e, &expr.Verdict{Kind: expr.VerdictDrop})
}

// ifname is an interface name as the kernel keys it: NUL-padded to IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// describe renders a rule's expressions in a canonical text, so that rules
// read back from the kernel can be compared with the ones the guard writes
// whatever the decoder fills in (set IDs, flags).
func describe(exprs []expr.Any) string {
	var parts []string
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			parts = append(parts, fmt.Sprintf("meta(%d)->r%d", e.Key, e.Register))
		case *expr.Cmp:
			parts = append(parts, fmt.Sprintf("r%d op%d %q", e.Register, e.Op, bytes.TrimRight(e.Data, "\x00")))
		case *expr.Payload:
			parts = append(parts, fmt.Sprintf("payload(base%d,%d,%d)->r%d", e.Base, e.Offset, e.Len, e.DestRegister))
		case *expr.Lookup:
			neg := ""
			if e.Invert {
				neg = "!"
			}
			parts = append(parts, fmt.Sprintf("r%d %s@%s", e.SourceRegister, neg, e.SetName))
		case *expr.Verdict:
			parts = append(parts, fmt.Sprintf("verdict(%d)", e.Kind))
		default:
			parts = append(parts, fmt.Sprintf("%T", e))
		}
	}
	return strings.Join(parts, " ")
}

// modeOf recognises which mode the rules read back from the kernel
// implement, per chain name. Anything else means someone edited the table.
func modeOf(got map[string][]string) (netguard.Mode, error) {
	for _, m := range []netguard.Mode{netguard.PerVIF, netguard.BlockAll, netguard.AllowAll} {
		want := map[string][]string{}
		for _, sig := range signatures(m) {
			want[sig.chain] = append(want[sig.chain], describe(sig.exprs()))
		}
		match := true
		for _, c := range []string{chainFwd, chainInput, chainOutput} {
			if !slices.Equal(got[c], want[c]) {
				match = false
				break
			}
		}
		if match {
			return m, nil
		}
	}
	return 0, fmt.Errorf("its rules match no netguard mode (edited by hand?): %v", got)
}

// stateOf assembles the State from the read-back sets and mode.
func stateOf(mode netguard.Mode, guarded, allowed []nftables.SetElement) (netguard.State, error) {
	s := netguard.State{Mode: mode}
	allow := make(map[string]bool, len(allowed))
	for _, e := range allowed {
		allow[string(e.Key)] = true
	}
	seen := make(map[string]bool, len(guarded))
	for _, e := range guarded {
		if seen[string(e.Key)] {
			return netguard.State{}, fmt.Errorf("set %s holds %s twice", setGuarded, net.HardwareAddr(e.Key))
		}
		seen[string(e.Key)] = true
		if len(e.Key) != 6 {
			return netguard.State{}, fmt.Errorf("set %s holds a %d-byte key, want a MAC", setGuarded, len(e.Key))
		}
		m, err := decodeMeta(e.Comment)
		if err != nil {
			return netguard.State{}, fmt.Errorf("element %s of set %s: %w", net.HardwareAddr(e.Key), setGuarded, err)
		}
		s.Rules = append(s.Rules, netguard.Rule{
			VIF:   netguard.VIF{VM: m.VM, MAC: slices.Clone(net.HardwareAddr(e.Key)), Port: m.Port, Addrs: m.Addrs},
			Allow: allow[string(e.Key)],
		})
		delete(allow, string(e.Key))
	}
	for k := range allow {
		return netguard.State{}, fmt.Errorf("set %s holds %s, which set %s lacks", setAllowed, net.HardwareAddr(k), setGuarded)
	}
	return s.Normalize(), nil
}
