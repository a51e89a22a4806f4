package ha

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Membership: members join through any member (the request is redirected to
// the leader), as voters while the cluster has fewer than MaxVoters, else as
// non-voters; a witness votes but runs no VMs. When a voter leaves, the
// leader promotes a live non-voter. A change that would leave the remaining
// voters without a live majority is refused (ErrQuorumAtRisk).

// Join asks the cluster reachable at any of addrs to admit this member. It
// retries until ctx ends. A wrong token, certificate or cluster ID is
// refused with a clear error and changes nothing. A member that already has
// state (restarted on its data directory) is a member already:
// ErrAlreadyBootstrapped.
func (c *Cluster) Join(ctx context.Context, addrs ...string) error {
	if c.existing.Load() {
		return fmt.Errorf("ha: join member %s: %w; it rejoins from its data directory on its own", c.cfg.ID, ErrAlreadyBootstrapped)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("ha: join member %s: no address given", c.cfg.ID)
	}
	req := rpcRequest{Op: opJoin, Token: c.cfg.JoinToken, Fresh: true,
		Host: &Host{ID: c.cfg.ID, Addr: c.addr, Role: c.cfg.Role, Incarnation: c.incarnation}}
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, a := range addrs {
			addr := a
			for hops := 0; hops < 3 && addr != ""; hops++ {
				resp, err := c.call(ctx, addr, req)
				if err != nil {
					lastErr = err
					if isRefusal(err) {
						return fmt.Errorf("ha: join member %s via %s: %w", c.cfg.ID, addr, err)
					}
					break
				}
				if resp.Err == "" {
					c.members.addSponsors(resp.Members...)
					c.existing.Store(true)
					c.log.Info("joined cluster", "via", addr)
					return nil
				}
				err = errFromWire(addr, resp.Code, resp.Err)
				lastErr = err
				if isRefusal(err) {
					return fmt.Errorf("ha: join member %s: %w", c.cfg.ID, err)
				}
				addr = resp.Leader // redirected to the leader, or "" to try the next address
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ha: join member %s: %w (last error: %v)", c.cfg.ID, ctx.Err(), lastErr)
		case <-time.After(min(50*time.Millisecond<<min(attempt, 4), time.Second)):
		}
	}
}

// isRefusal reports errors that retrying cannot cure.
func isRefusal(err error) bool {
	for _, s := range []error{ErrBadToken, ErrWrongCluster, ErrBadCertificate, ErrIDInUse, ErrInvalidConfig, ErrQuorumAtRisk, ErrRefused, ErrNotAuthorized} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Leave removes this member from the cluster for good (its ID is not
// reused). A leader hands leadership over first. Close the member afterwards.
func (c *Cluster) Leave(ctx context.Context) error {
	return c.Remove(ctx, c.cfg.ID)
}

// Remove takes member id out of the cluster (a dead host, or one retired by
// an operator). It is refused with ErrQuorumAtRisk if the remaining voters
// could not form a quorum.
func (c *Cluster) Remove(ctx context.Context, id string) error {
	for {
		if c.isLeader() && id == c.cfg.ID {
			if err := c.checkRemoval(id); err != nil {
				return err
			}
			if err := c.raft.LeadershipTransfer().Error(); err != nil {
				return fmt.Errorf("ha: leave: hand leadership over from %s: %w", id, err)
			}
		}
		if c.isLeader() {
			return c.removeMember(ctx, id)
		}
		resp, _, err := c.callLeader(ctx, rpcRequest{Op: opRemove, ID: id})
		if err != nil {
			return fmt.Errorf("ha: remove member %s: %w", id, err)
		}
		if resp.Err == "" {
			return nil
		}
		err = errFromWire("leader", resp.Code, resp.Err)
		if !errors.Is(err, ErrNotLeader) {
			return fmt.Errorf("ha: remove member %s: %w", id, err)
		}
		c.pause(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("ha: remove member %s: %w", id, ctx.Err())
		}
	}
}

// admit is the leader's half of Join.
func (c *Cluster) admit(ctx context.Context, token string, h Host, fresh bool) error {
	if subtle.ConstantTimeCompare([]byte(token), []byte(c.cfg.JoinToken)) != 1 {
		return fmt.Errorf("%w: member %q presented a join token that does not match the cluster's: check JoinToken", ErrBadToken, h.ID)
	}
	if err := checkName(h.ID); err != nil {
		return fmt.Errorf("ha: join: member ID: %v: %w", err, ErrRefused)
	}
	switch h.Role {
	case RoleVoter, RoleNonVoter, RoleWitness:
	default:
		return fmt.Errorf("ha: join member %s: role %q: %w", h.ID, h.Role, ErrRefused)
	}
	cfg, err := c.raftConfig()
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	suffrage := raft.Nonvoter
	if h.Role != RoleNonVoter && voters < c.cfg.MaxVoters {
		suffrage = raft.Voter
	}
	if h.Role == RoleVoter && suffrage == raft.Nonvoter {
		h.Role = RoleNonVoter // promoted when a voter leaves
	}
	// Record the host first: the incarnation check refuses a wiped member
	// before Raft ever sees it, and the table maps its address to its ID.
	if _, err := c.propose(ctx, &hostJoin{Host: h}); err != nil {
		return fmt.Errorf("ha: join member %s: %w", h.ID, err)
	}
	var f raft.IndexFuture
	if suffrage == raft.Voter {
		f = c.raft.AddVoter(raft.ServerID(h.ID), raft.ServerAddress(h.Addr), 0, timeoutOf(ctx))
	} else {
		f = c.raft.AddNonvoter(raft.ServerID(h.ID), raft.ServerAddress(h.Addr), 0, timeoutOf(ctx))
	}
	c.refreshMembers()
	if err := f.Error(); err != nil {
		return fmt.Errorf("ha: add member %s to Raft: %w", h.ID, c.raftErr(err))
	}
	c.emit(Event{Kind: EventMemberJoined, Host: h.ID, Message: string(h.Role)})
	c.log.Info("member joined", "id", h.ID, "addr", h.Addr, "role", h.Role, "voter", suffrage == raft.Voter)
	return nil
}

func (c *Cluster) raftConfig() (raft.Configuration, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("ha: read Raft configuration on %s: %w", c.cfg.ID, err)
	}
	return f.Configuration(), nil
}

// checkRemoval refuses removing id if the voters left would not hold a live
// majority. Liveness is the leader's view: a peer whose heartbeats fail is
// counted dead.
func (c *Cluster) checkRemoval(id string) error {
	cfg, err := c.raftConfig()
	if err != nil {
		return err
	}
	var rest []string
	member := false
	for _, s := range cfg.Servers {
		if string(s.ID) == id {
			member = true
			continue
		}
		if s.Suffrage == raft.Voter {
			rest = append(rest, string(s.ID))
		}
	}
	if !member {
		return nil
	}
	alive := 0
	for _, v := range rest {
		if v == c.cfg.ID || c.peers.alive(v) {
			alive++
		}
	}
	if len(rest) == 0 || alive <= len(rest)/2 {
		return fmt.Errorf("ha: remove member %s: only %d of the %d remaining voters are reachable, which is no majority: %w; bring members back first",
			id, alive, len(rest), ErrQuorumAtRisk)
	}
	return nil
}

// removeMember is the leader's half of Remove.
func (c *Cluster) removeMember(ctx context.Context, id string) error {
	if id == c.cfg.ID {
		return fmt.Errorf("ha: member %s cannot remove itself while leader: %w", id, ErrNotLeader)
	}
	if err := c.checkRemoval(id); err != nil {
		return err
	}
	if _, err := c.propose(ctx, &hostLeave{ID: id}); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("ha: remove member %s: %w", id, err)
	}
	err := c.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)).Error()
	c.refreshMembers() // the removed member's next request is refused
	if err != nil {
		return fmt.Errorf("ha: remove member %s from Raft: %w", id, c.raftErr(err))
	}
	c.peers.forget(id)
	c.emit(Event{Kind: EventMemberLeft, Host: id})
	c.log.Info("member removed", "id", id)
	c.promote(ctx)
	return nil
}

// reconcileMembers runs while this member leads: it promotes non-voters into
// free voter seats and, if RemoveDeadAfter is set, removes members dead for
// that long (never past quorum).
func (c *Cluster) reconcileMembers(ctx context.Context) {
	t := time.NewTicker(c.cfg.HeartbeatTimeout)
	defer t.Stop()
	for {
		c.promote(ctx)
		if c.cfg.RemoveDeadAfter > 0 {
			c.removeDead(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// minAutoVoters is the floor automatic removal keeps: below three voters a
// single further failure stops the cluster, which is an operator's call.
const minAutoVoters = 3

// removeDead removes members dead past RemoveDeadAfter, voters only while
// at least minAutoVoters would remain.
func (c *Cluster) removeDead(ctx context.Context) {
	for _, id := range c.peers.deadFor(c.cfg.RemoveDeadAfter) {
		cfg, err := c.raftConfig()
		if err != nil {
			return
		}
		voters, isVoter, member := 0, false, false
		for _, s := range cfg.Servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
			if string(s.ID) == id {
				member, isVoter = true, s.Suffrage == raft.Voter
			}
		}
		if !member {
			c.peers.forget(id)
			continue
		}
		if isVoter && voters-1 < minAutoVoters {
			continue
		}
		c.log.Warn("removing member dead past RemoveDeadAfter", "id", id, "after", c.cfg.RemoveDeadAfter)
		if err := c.removeMember(ctx, id); err != nil {
			c.log.Warn("not removing dead member", "id", id, "err", err)
		}
	}
}

// promote fills free voter seats with live non-voters, lowest ID first.
func (c *Cluster) promote(ctx context.Context) {
	cfg, err := c.raftConfig()
	if err != nil {
		return
	}
	voters := 0
	var candidates []string
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		} else if c.peers.alive(string(s.ID)) {
			candidates = append(candidates, string(s.ID))
		}
	}
	slices.Sort(candidates)
	for _, id := range candidates {
		if voters >= c.cfg.MaxVoters || ctx.Err() != nil {
			return
		}
		addr := ""
		for _, s := range cfg.Servers {
			if string(s.ID) == id {
				addr = string(s.Address)
			}
		}
		if err := c.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)).Error(); err != nil {
			c.log.Warn("promotion failed", "id", id, "err", err)
			return
		}
		voters++
		role := RoleVoter
		c.read(func(s *State) {
			if h := s.Hosts[id]; h != nil && h.Role == RoleWitness {
				role = RoleWitness
			}
		})
		if _, err := c.propose(ctx, &hostRole{ID: id, Role: role}); err != nil {
			c.log.Warn("recording promotion failed", "id", id, "err", err)
		}
		c.emit(Event{Kind: EventMemberPromoted, Host: id})
		c.log.Info("member promoted to voter", "id", id)
	}
}

// peerHealth is the leader's view of which peers answer heartbeats.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time // peer → last contact
}

func (p *peerHealth) failed(id string, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing == nil {
		p.failing = map[string]time.Time{}
	}
	if _, ok := p.failing[id]; !ok {
		if last.IsZero() {
			last = time.Now()
		}
		p.failing[id] = last
	}
}

func (p *peerHealth) resumed(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failing, id)
}

func (p *peerHealth) forget(id string) { p.resumed(id) }

// reset forgets every failure. Raft reports a peer's failures and its
// recovery from them only within one leadership term (a new term's
// heartbeats start with a clean count and never report "resumed"), so a
// failure remembered from an earlier term would mark a live peer dead for
// good: the leadership watcher resets at every change.
func (p *peerHealth) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = nil
}

func (p *peerHealth) alive(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, bad := p.failing[id]
	return !bad
}

func (p *peerHealth) deadFor(d time.Duration) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id, last := range p.failing {
		if time.Since(last) > d {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Member is one entry of the Raft configuration as this member knows it.
type Member struct {
	ID    string
	Addr  string
	Voter bool
	// Reachable is false when this member, as leader, sees the member's
	// heartbeats fail. Followers do not track it and report true.
	Reachable bool
}

// Members lists the Raft configuration as this member last learned it,
// sorted by ID.
func (c *Cluster) Members() ([]Member, error) {
	cfg, err := c.raftConfig()
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter,
			Reachable: string(s.ID) == c.cfg.ID || c.peers.alive(string(s.ID))})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// TransferLeadership hands the leader's role, and with it the pool master's
// work, to another voter, for example before maintenance on the leader's
// host. Open incidents continue on the new leader. It returns ErrNotLeader on
// a follower, and returns once Raft reports the transfer done.
func (c *Cluster) TransferLeadership(ctx context.Context) error {
	if !c.isLeader() {
		return fmt.Errorf("transfer leadership from %s: %w", c.cfg.ID, ErrNotLeader)
	}
	f := c.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("transfer leadership from %s: %w", c.cfg.ID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("transfer leadership from %s: outcome unknown (%w): %w", c.cfg.ID, context.Cause(ctx), ErrIndeterminate)
	}
}
