package ha

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Authorization. TLS proves who a peer is; the Raft configuration says
// whether it may act. Every Raft stream and every cluster RPC but the join
// is accepted only from a peer whose certificate names a member of this
// member's latest Raft configuration (the one Raft itself acts on,
// uncommitted changes included), and checked again on every request, so
// that a removed member's certificate stops working at once without a CA
// change. Two cases need more than the local configuration:
//
//   - A joiner has no configuration until the leader's first entries reach
//     it, and those start with the bootstrap configuration, which need not
//     name the leader. Until its own configuration names it, it accepts the
//     members it sent its join request to and those the join answer listed
//     (its sponsors).
//   - A member that was cut off while others joined meets a leader its own
//     configuration does not name yet. It asks the members it knows whether
//     the peer is in theirs (a vouch), and accepts it for a short while, so
//     that the leader can send it the entries that name it.
//
// Operators hold certificates with the operator role (OperatorOU). They may
// read and call the public administrative operations over the cluster RPC,
// and never speak Raft.

// OperatorOU is the organizational unit that gives a certificate signed by
// the cluster CA the operator role instead of the member role.
const OperatorOU = "xenha-operator"

// IsOperatorCert reports whether cert carries the operator role: an
// organizational unit equal to OperatorOU. A certificate without it is a
// member certificate, which names its member ID as a DNS SAN. The caller
// must have verified cert against the cluster CA.
func IsOperatorCert(cert *x509.Certificate) bool {
	return cert != nil && slices.Contains(cert.Subject.OrganizationalUnit, OperatorOU)
}

// ErrNotAuthorized means a peer asked for something its certificate does not
// allow: it names no current member, or a member asked to act for another
// host or for the leader, or an operator asked to speak Raft.
var ErrNotAuthorized = errors.New("ha: peer not authorized")

// vouchTTL is how long a peer another member vouched for is accepted
// without this member's own configuration naming it. A connection that
// outlives it is closed, and the peer is asked about again when it redials.
const vouchTTL = 10 * time.Second

// peerID is who is at the other end of a connection.
type peerID struct {
	id       string
	operator bool
}

func (p peerID) String() string {
	if p.operator {
		return "operator " + p.id
	}
	return "member " + p.id
}

// memberView is this member's latest Raft configuration as sets of IDs,
// refreshed whenever Raft stores a configuration (and every second).
type memberView struct {
	self      string
	refreshMu sync.Mutex

	mu       sync.RWMutex
	ids      map[string]bool
	sponsors map[string]string // id → address
	// persist, if set, stores the sponsors (a joiner that restarts before
	// the leader's first entries reach it still knows whom to accept).
	persist func(map[string]string)
	vouched map[string]time.Time // id → accepted until
	// gone are IDs this member saw leave its configuration. IDs are never
	// reused, so no vouch brings them back: a member that has not yet
	// heard of a removal must not vouch a removed member back in.
	gone map[string]bool
	// asked are IDs no member vouched for lately (when): a stranger that
	// keeps dialling must not make this member ask the others each time.
	asked map[string]time.Time
}

// deniedLately reports whether no member vouched for id in the last second.
func (v *memberView) deniedLately(id string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	t, ok := v.asked[id]
	return ok && time.Since(t) < time.Second
}

func (v *memberView) deny(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.asked == nil || len(v.asked) > 1024 {
		v.asked = map[string]time.Time{}
	}
	v.asked[id] = time.Now()
}

func (v *memberView) set(cfg raft.Configuration) {
	ids := make(map[string]bool, len(cfg.Servers))
	for _, s := range cfg.Servers {
		ids[string(s.ID)] = true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for id := range v.ids {
		if !ids[id] {
			if v.gone == nil {
				v.gone = map[string]bool{}
			}
			v.gone[id] = true
		}
	}
	v.ids = ids
	for id := range v.vouched {
		if ids[id] {
			delete(v.vouched, id)
		}
	}
}

func (v *memberView) addSponsors(ms ...sponsor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sponsors == nil {
		v.sponsors = map[string]string{}
	}
	changed := false
	for _, m := range ms {
		if m.ID != "" && m.ID != v.self && m.Addr != "" && v.sponsors[m.ID] != m.Addr {
			v.sponsors[m.ID], changed = m.Addr, true
		}
	}
	if changed && v.persist != nil {
		v.persist(maps.Clone(v.sponsors))
	}
}

// sponsor is a member a joiner accepts until its configuration names it.
type sponsor struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// vouchers are the addresses of the members to ask about a peer: those of
// the configuration while it names this member, else the sponsors.
func (v *memberView) vouchers(cfg raft.Configuration, except string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []string
	if v.ids[v.self] {
		for _, s := range cfg.Servers {
			if string(s.ID) != v.self && string(s.ID) != except {
				out = append(out, string(s.Address))
			}
		}
		return out
	}
	for id, addr := range v.sponsors {
		if id != except {
			out = append(out, addr)
		}
	}
	return out
}

func (v *memberView) vouch(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gone[id] {
		return
	}
	if v.vouched == nil {
		v.vouched = map[string]time.Time{}
	}
	v.vouched[id] = time.Now().Add(vouchTTL)
}

// isMember reports whether id is in the latest configuration.
func (v *memberView) isMember(id string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.ids[id]
}

// members lists the latest configuration, sorted.
func (v *memberView) members() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.ids))
	for id := range v.ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// mayAct reports whether member id may speak Raft or call member RPCs here.
func (v *memberView) mayAct(id string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.ids[id] {
		return true
	}
	if _, ok := v.sponsors[id]; ok && !v.ids[v.self] {
		return true
	}
	until, ok := v.vouched[id]
	return ok && !v.gone[id] && time.Now().Before(until)
}

// mayStay reports whether an open Raft stream from id may go on. It is
// mayAct without the vouch's time limit: a peer vouched for when its stream
// opened keeps it until this member learns that it left. A new leader that
// must send a lagging member a snapshot may take longer than vouchTTL to
// send it, and cutting the stream at the deadline would cut every retry
// too, so the member would never learn the configuration that names the
// leader. Each request on the stream is still checked (checkRaftRPC).
func (v *memberView) mayStay(id string) bool {
	if v.mayAct(id) {
		return true
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, vouched := v.vouched[id]
	return vouched && !v.gone[id]
}

// wasMember reports whether id left this member's configuration.
func (v *memberView) wasMember(id string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.gone[id]
}

// refreshMembers reads Raft's latest configuration into the view. Refreshes
// run one at a time, so that an older read never overwrites a newer one.
func (c *Cluster) refreshMembers() {
	c.members.refreshMu.Lock()
	defer c.members.refreshMu.Unlock()
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	c.members.set(f.Configuration())
}

// pokeMembers asks the watcher to refresh the view (Raft stored a
// configuration entry or a snapshot). It never blocks.
func (c *Cluster) pokeMembers() {
	select {
	case c.membersPoke <- struct{}{}:
	default:
	}
}

// watchMembers keeps the view current for the member's life.
func (c *Cluster) watchMembers() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		c.refreshMembers()
		select {
		case <-c.ctx.Done():
			return
		case <-c.membersPoke:
		case <-t.C:
		}
	}
}

// admitPeer decides, after the hello, whether p may open stream here.
func (c *Cluster) admitPeer(p peerID, stream byte) error {
	if stream == streamRaft {
		if p.operator {
			return fmt.Errorf("%w: %s holds an operator certificate, which never speaks Raft", ErrNotAuthorized, p)
		}
		return c.mayAct(p.id, "open a Raft stream")
	}
	// Cluster RPC: anyone with a certificate of the cluster CA may connect
	// (a joiner); each request is authorized on its own (authorizeRPC).
	return nil
}

// mayAct authorizes member id, asking other members to vouch for it when
// this member's configuration does not name it.
func (c *Cluster) mayAct(id, what string) error {
	if c.members.mayAct(id) {
		return nil
	}
	left := c.members.wasMember(id)
	c.read(func(s *State) { h := s.Hosts[id]; left = left || (h != nil && h.State == HostLeft) })
	if !left && !c.members.deniedLately(id) {
		if c.askVouch(id) {
			c.members.vouch(id)
			c.log.Info("accepting a peer this member's configuration does not name yet: another member vouched for it", "peer", id)
			return nil
		}
		c.members.deny(id)
	}
	return fmt.Errorf("%w: %s is not a member of this cluster's Raft configuration as member %s knows it (members: %v): it may not %s",
		ErrNotAuthorized, id, c.cfg.ID, c.members.members(), what)
}

// askVouch asks the members this one knows (its configuration's, or while
// that does not name it yet, its sponsors) whether id is in their
// configuration; any yes counts.
func (c *Cluster) askVouch(id string) bool {
	var cfg raft.Configuration
	if c.members.isMember(c.cfg.ID) {
		if f := c.raft.GetConfiguration(); f.Error() == nil {
			cfg = f.Configuration()
		}
	}
	addrs := c.members.vouchers(cfg, id)
	if len(addrs) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	yes := make(chan bool, len(addrs))
	for _, a := range addrs {
		go func() {
			r, err := c.call(ctx, a, rpcRequest{Op: opMember, ID: id})
			yes <- err == nil && r.Err == "" && r.Member
		}()
	}
	for range addrs {
		select {
		case ok := <-yes:
			if ok {
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
	return false
}

// authorizeRPC checks one cluster RPC request from p.
func (c *Cluster) authorizeRPC(p peerID, req rpcRequest) error {
	switch req.Op {
	case opJoin:
		if p.operator {
			return fmt.Errorf("%w: %s holds an operator certificate and cannot join as a member", ErrNotAuthorized, p)
		}
		return nil // the token decides (admit)
	case opReadIndex, opRemove, opApply:
		if p.operator {
			return nil // the command kind decides (mayPropose)
		}
	}
	if p.operator {
		return fmt.Errorf("%w: %s may not call %q", ErrNotAuthorized, p, req.Op)
	}
	if p.id == c.cfg.ID {
		return nil // this member forwarding to itself (it just became leader)
	}
	if req.Op == opMember {
		// Answered from the local view only: vouching does not chain.
		if !c.members.isMember(p.id) {
			return fmt.Errorf("%w: member %s is not in member %s's configuration: it may not ask about members", ErrNotAuthorized, p.id, c.cfg.ID)
		}
		return nil
	}
	if err := c.mayAct(p.id, "call "+req.Op); err != nil {
		return err
	}
	left := false
	c.read(func(s *State) { h := s.Hosts[p.id]; left = h != nil && h.State == HostLeft })
	if left {
		return fmt.Errorf("%w: member %s left the cluster (removed): it may not call %q", ErrNotAuthorized, p.id, req.Op)
	}
	return nil
}

// mayPropose checks that p may propose cmd through this leader. A member
// speaks only for its own host; a fence proof, a host record and the
// leader's bookkeeping never come from another member; operators propose
// the administrative commands only.
func mayPropose(p peerID, cmd command) error {
	self := func(host string) error {
		if p.operator || host != p.id {
			return fmt.Errorf("%w: %s may not send %s for host %q: a member speaks only for itself", ErrNotAuthorized, p, cmd.kind(), host)
		}
		return nil
	}
	switch c := cmd.(type) {
	case *renewCmd:
		return self(c.Host)
	case *registerCmd:
		return self(c.Host)
	case *observedCmd:
		return self(c.Host)
	case *migratedCmd:
		return self(c.From)
	case *fenceCmd:
		if !c.Manual {
			return fmt.Errorf("%w: %s sent a fence proof for host %s: proofs come only from the leader's own fencer", ErrNotAuthorized, p, c.Host)
		}
		if p.operator && c.Operator != p.id {
			return fmt.Errorf("%w: %s may acknowledge a fence only under its own name, not %q", ErrNotAuthorized, p, c.Operator)
		}
		return nil
	case *maintenanceCmd, *migrateCmd, *releaseCmd, *vmPut, *vmDelete, *volumePut, *volumeDelete:
		return nil
	}
	return fmt.Errorf("%w: %s sent %s, which only the leader itself proposes", ErrNotAuthorized, p, cmd.kind())
}

// checkRaftRPC is the guarded transport's check of every Raft request.
func (c *Cluster) checkRaftRPC(rpc raft.RPC) error {
	var from string
	if h, ok := rpc.Command.(raft.WithRPCHeader); ok {
		from = string(h.GetRPCHeader().ID)
	}
	if !c.members.mayAct(from) {
		c.log.Warn("dropped a Raft request from a peer that is not a member", "peer", from, "rpc", fmt.Sprintf("%T", rpc.Command))
		return fmt.Errorf("%w: %q is not a member of member %s's Raft configuration", ErrNotAuthorized, from, c.cfg.ID)
	}
	var bad error
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		bad = checkEntries(req.Entries)
	case *raft.InstallSnapshotRequest:
		if req.SnapshotVersion < 1 {
			bad = fmt.Errorf("snapshot of version %d carries a legacy peer list, which xenha never writes", req.SnapshotVersion)
		} else if _, err := decodeConfiguration(req.Configuration); err != nil {
			bad = fmt.Errorf("snapshot at index %d: Raft configuration does not decode: %v", req.LastLogIndex, err)
		}
	}
	if bad != nil {
		c.fsm.halt(fmt.Errorf("%w: member %s sent %w", ErrHalted, from, bad))
		return fmt.Errorf("ha: member %s refused a Raft request from %s: %w", c.cfg.ID, from, bad)
	}
	return nil
}

const sponsorsKey = "xenha.sponsors"

// loadSponsors reads the sponsors a joiner recorded, and records later ones.
func (c *Cluster) loadSponsors(stable raft.StableStore) error {
	b, err := stable.Get([]byte(sponsorsKey))
	if err == nil && len(b) > 0 {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("read the members this one joined through (%s): %w", sponsorsKey, err)
		}
		for id, addr := range m {
			c.members.addSponsors(sponsor{ID: id, Addr: addr})
		}
	}
	c.members.persist = func(m map[string]string) {
		b, err := json.Marshal(m)
		if err == nil {
			err = stable.Set([]byte(sponsorsKey), b)
		}
		if err != nil {
			c.log.Warn("could not record the members this one joins through", "err", err)
		}
	}
	return nil
}
