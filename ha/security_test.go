package ha_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// The security suite: an attacker holds a certificate signed by the cluster
// CA (for an ID that never joined, for a member, for a removed member, or
// with the operator role) and speaks the member protocol by hand over real
// TCP with mutual TLS. Every forged request must be refused before it
// reaches Raft or the log, and the members must neither panic nor halt.

// logBuffer collects the members' log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), s)
}

// dump logs the lines that mention about and any of words.
func (b *logBuffer) dump(t *testing.T, about string, words ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.buf.String(), "\n") {
		for _, w := range words {
			if strings.Contains(line, about) && strings.Contains(line, w) {
				t.Log(line)
				break
			}
		}
	}
}

// secureCluster is a 3-member TCP+TLS cluster whose logs are kept.
func secureCluster(t *testing.T, n int) (*hatest.Cluster, *logBuffer, context.Context, int) {
	t.Helper()
	logs := &logBuffer{}
	hc := tcpCluster(t, n, hatest.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	ctx := ctxT(t, 90*time.Second)
	return hc, logs, ctx, waitLeader(t, ctx, hc)
}

func attacker(t *testing.T, hc *hatest.Cluster, id string) *ha.Attacker {
	t.Helper()
	tc, err := hc.CA().Member(id)
	if err != nil {
		t.Fatal(err)
	}
	return ha.NewAttacker(tc, hatest.ClusterID, id)
}

func forged(t *testing.T, kind string, body any) []byte {
	t.Helper()
	data, err := ha.EncodeCommand(kind, body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func wantNotAuthorized(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ha.ErrNotAuthorized) {
		t.Fatalf("%s: got %v, want ErrNotAuthorized", what, err)
	}
	t.Logf("%s refused: %v", what, err)
}

func TestSecurityNonMemberIsRefused(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, l := secureCluster(t, 3)
	leader := hc.Member(l)
	victim := hc.ID((l + 1) % 3)
	before := hostOf(t, ctx, leader, victim)
	members := membership(t, ctx, leader)
	h9 := attacker(t, hc, "h9") // signed by the cluster CA, never joined

	fence := forged(t, "host.fence", map[string]any{"host": victim, "epoch": before.Epoch, "method": "ipmi", "evidence": "forged"})
	put := forged(t, "vm.put", map[string]any{"vm": map[string]any{"name": "evil", "spec": map[string]any{"domain_xml": "<domain type='kvm'><name>evil</name></domain>"}}})
	for _, tt := range []struct {
		what, op string
		data     []byte
		id       string
	}{
		{"forged fence proof for a live host", "apply", fence, ""},
		{"vm.put with the attacker's domain XML", "apply", put, ""},
		{"removal of a live member", "remove", nil, victim},
		{"read index", "readindex", nil, ""},
		{"ping", "ping", nil, ""},
	} {
		_, err := h9.Call(ctx, leader.Addr(), tt.op, tt.data, tt.id)
		wantNotAuthorized(t, tt.what, err)
	}
	if after := hostOf(t, ctx, leader, victim); after.Epoch != before.Epoch || after.State == ha.HostFenced {
		t.Fatalf("%s went from epoch %d to %d (%s)", victim, before.Epoch, after.Epoch, after.State)
	}
	if _, ok, _ := getValue(ctx, leader, "evil", ha.Consistent); ok {
		t.Fatal("the attacker's VM was stored")
	}
	if after := membership(t, ctx, leader); after != members {
		t.Fatalf("membership changed:\nbefore %s\nafter  %s", members, after)
	}
	if !logs.has("refused a cluster RPC request") || !logs.has("peer=\"member h9\"") {
		t.Error("the refusals left no log line naming the peer")
	}
}

func TestSecurityMemberSpeaksOnlyForItself(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, l := secureCluster(t, 3)
	leader := hc.Member(l)
	me, other := hc.ID((l+1)%3), hc.ID((l+2)%3)
	h := attacker(t, hc, me) // a member's own certificate
	oh := hostOf(t, ctx, leader, other)
	for _, tt := range []struct {
		what, kind string
		body       any
	}{
		{"fence proof for a live host", "host.fence", map[string]any{"host": other, "epoch": oh.Epoch, "method": "ipmi", "evidence": "forged"}},
		{"lease renewal for another host", "lease.renew", map[string]any{"host": other, "epoch": oh.Epoch, "sent": time.Now()}},
		{"host record for another host", "host.register", map[string]any{"host": other, "epoch": oh.Epoch, "capacity": map[string]any{"memory_kib": 1 << 40, "vcpus": 4096}}},
		{"report for another host", "vm.observed", map[string]any{"host": other, "epoch": oh.Epoch, "vms": []any{}}},
		{"placement (the leader's own)", "vm.assign", map[string]any{"moves": []any{}, "reason": "forged"}},
		{"suspicion (the leader's own)", "host.suspect", map[string]any{"host": other, "epoch": oh.Epoch}},
		{"host join outside the join RPC", "host.join", map[string]any{"host": map[string]any{"id": "h7", "addr": "127.0.0.1:1"}}},
	} {
		_, err := h.Call(ctx, leader.Addr(), "apply", forged(t, tt.kind, tt.body), "")
		wantNotAuthorized(t, tt.what, err)
	}
	if after := hostOf(t, ctx, leader, other); after.Epoch != oh.Epoch || after.State == ha.HostFenced {
		t.Fatalf("%s went from epoch %d to %d (%s)", other, oh.Epoch, after.Epoch, after.State)
	}
	// Its own renewal is its to send.
	mine := hostOf(t, ctx, leader, me)
	if _, err := h.Call(ctx, leader.Addr(), "apply", forged(t, "lease.renew", map[string]any{"host": me, "epoch": mine.Epoch, "sent": time.Now()}), ""); err != nil {
		t.Fatalf("a member's renewal for itself: %v", err)
	}
	if !logs.has("refused a forwarded command") {
		t.Error("no log line for the refused commands")
	}
}

func TestSecurityRaftFromNonMemberIsDropped(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, l := secureCluster(t, 3)
	fi := (l + 1) % 3
	follower := hc.Member(fi)
	term := ha.Term(follower)
	leaderID, _ := follower.Leader()
	tr := attacker(t, hc, "h9").Raft()
	defer tr.Close()
	to, addr := raft.ServerID(hc.ID(fi)), raft.ServerAddress(follower.Addr())
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("h9"), Addr: []byte("127.0.0.1:1")}

	var tn raft.TimeoutNowResponse
	err := tr.TimeoutNow(to, addr, &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn)
	if err == nil {
		t.Fatal("TimeoutNow from a non-member was accepted")
	}
	t.Logf("TimeoutNow refused: %v", err)
	var ae raft.AppendEntriesResponse
	err = tr.AppendEntries(to, addr, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term + 100, PrevLogEntry: 0, LeaderCommitIndex: 0}, &ae)
	if err == nil {
		t.Fatal("AppendEntries at term+100 from a non-member was accepted")
	}
	garbage := []*raft.Log{{Index: 1_000_000, Term: term + 100, Type: raft.LogConfiguration, Data: []byte{0xc1, 0xff, 0x00}}}
	err = tr.AppendEntries(to, addr, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term + 100, Entries: garbage}, &ae)
	if err == nil {
		t.Fatal("AppendEntries with a garbage configuration from a non-member was accepted")
	}
	var rv raft.RequestVoteResponse
	if err := tr.RequestVote(to, addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term + 100, LastLogIndex: 1 << 40, LastLogTerm: term + 100}, &rv); err == nil {
		t.Fatal("RequestVote from a non-member was accepted")
	}
	if now := ha.Term(follower); now >= term+100 {
		t.Fatalf("the follower's term moved from %d to %d", term, now)
	}
	if id, _ := follower.Leader(); id != leaderID && id != "" {
		// An ordinary election may happen under load; a forced one would
		// have made the follower the leader at a high term.
		if ha.Term(follower) > term+50 {
			t.Fatalf("leader changed from %s to %s at term %d", leaderID, id, ha.Term(follower))
		}
	}
	if err := ha.Halted(follower); err != nil {
		t.Fatalf("the follower halted: %v", err)
	}
	if err := putValue(ctx, hc.Member(l), "after", 1); err != nil {
		t.Fatalf("the cluster no longer takes writes: %v", err)
	}
	if !logs.has("refused connection") || !logs.has("open a Raft stream") {
		t.Error("no log line for the refused Raft stream")
	}
}

func TestSecurityRemovedMemberRefusedAtOnce(t *testing.T) {
	t.Parallel()
	hc, _, ctx, l := secureCluster(t, 4)
	leader := hc.Member(l)
	gone := (l + 3) % 4
	goneID := hc.ID(gone)
	stolen := attacker(t, hc, goneID)
	// While a member, its certificate works.
	if _, err := stolen.Call(ctx, leader.Addr(), "readindex", nil, ""); err != nil {
		t.Fatalf("a member's read index: %v", err)
	}
	tr := stolen.Raft()
	defer tr.Close()
	if err := leader.Remove(ctx, goneID); err != nil {
		t.Fatal(err)
	}
	// The very next request is refused: no CA change, no wait.
	_, err := stolen.Call(ctx, leader.Addr(), "readindex", nil, "")
	wantNotAuthorized(t, "the removed member's first request", err)
	_, err = stolen.Call(ctx, leader.Addr(), "apply", forged(t, "vm.put", map[string]any{"vm": map[string]any{"name": "late"}}), "")
	wantNotAuthorized(t, "the removed member's write", err)
	// Its Raft traffic is refused by the members that remain.
	other := hc.Member((l + 1) % 4)
	eventually(t, ctx, "followers drop the removed member's Raft stream", func() bool {
		var ae raft.AppendEntriesResponse
		hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(goneID), Addr: []byte(hc.Member(gone).Addr())}
		err := tr.AppendEntries(raft.ServerID(hc.ID((l+1)%4)), raft.ServerAddress(other.Addr()), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: ha.Term(other) + 100}, &ae)
		return err != nil
	})
}

func TestSecurityOperatorRole(t *testing.T) {
	t.Parallel()
	hc, _, ctx, l := secureCluster(t, 3)
	leader := hc.Member(l)
	tc, err := hc.CA().Operator("alice")
	if err != nil {
		t.Fatal(err)
	}
	op := ha.NewAttacker(tc, hatest.ClusterID, "alice")
	if _, err := op.Call(ctx, leader.Addr(), "readindex", nil, ""); err != nil {
		t.Fatalf("operator read: %v", err)
	}
	put := forged(t, "vm.put", map[string]any{"vm": map[string]any{"name": "web1", "spec": map[string]any{"memory_kib": 1024}, "policy": map[string]any{"restart": "off"}}})
	if _, err := op.Call(ctx, leader.Addr(), "apply", put, ""); err != nil {
		t.Fatalf("operator vm.put: %v", err)
	}
	other := hc.ID((l + 1) % 3)
	h := hostOf(t, ctx, leader, other)
	_, err = op.Call(ctx, leader.Addr(), "apply", forged(t, "lease.renew", map[string]any{"host": other, "epoch": h.Epoch}), "")
	wantNotAuthorized(t, "an operator's lease renewal", err)
	_, err = op.Call(ctx, leader.Addr(), "apply", forged(t, "host.fence", map[string]any{"host": other, "epoch": h.Epoch, "method": "manual", "manual": true, "operator": "bob"}), "")
	wantNotAuthorized(t, "an operator's fence acknowledgement under another name", err)
	_, err = op.Call(ctx, leader.Addr(), "ping", nil, "")
	wantNotAuthorized(t, "an operator's ping", err)
	_, err = op.Call(ctx, leader.Addr(), "join", nil, "")
	wantNotAuthorized(t, "an operator's join", err)
	tr := op.Raft()
	defer tr.Close()
	// Its requests claim to come from the leader: only the hello's check of
	// the certificate's role stands in the way.
	var tn raft.TimeoutNowResponse
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(hc.ID(l)), Addr: []byte(leader.Addr())}
	err = tr.TimeoutNow(raft.ServerID(other), raft.ServerAddress(hc.Member((l+1)%3).Addr()), &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn)
	wantNotAuthorized(t, "an operator's Raft stream", err)
	// An operator whose name is a member's ID is still an operator: the
	// role decides, not the name.
	named, err := hc.CA().Operator(hc.ID(l))
	if err != nil {
		t.Fatal(err)
	}
	tr2 := ha.NewAttacker(named, hatest.ClusterID, hc.ID(l)).Raft()
	defer tr2.Close()
	err = tr2.TimeoutNow(raft.ServerID(other), raft.ServerAddress(hc.Member((l+1)%3).Addr()), &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn)
	wantNotAuthorized(t, "an operator named like a member on a Raft stream", err)
	h2 := hostOf(t, ctx, leader, other)
	_, err = ha.NewAttacker(named, hatest.ClusterID, hc.ID(l)).Call(ctx, leader.Addr(), "apply", forged(t, "lease.renew", map[string]any{"host": hc.ID(l), "epoch": h2.Epoch}), "")
	wantNotAuthorized(t, "an operator named like a member renewing that member's lease", err)
	// An operator certificate that says it is a member is refused at the hello.
	_, err = ha.NewAttacker(tc, hatest.ClusterID, other).Call(ctx, leader.Addr(), "readindex", nil, "")
	if !errors.Is(err, ha.ErrBadCertificate) {
		t.Fatalf("operator certificate under a member's name: got %v, want ErrBadCertificate", err)
	}
}

// A member holding a stolen certificate of a current member sends a
// configuration entry that does not decode. Raft would store it, then panic
// decoding it, at once and at every restart. The follower refuses it before
// Raft sees it and halts with a clear error; restarted, it runs again.
func TestSecurityGarbageConfigurationHaltsWithoutPanic(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, l := secureCluster(t, 3)
	fi := (l + 1) % 3
	follower := hc.Member(fi)
	leaderID := hc.ID(l)
	tr := attacker(t, hc, leaderID).Raft()
	defer tr.Close()
	s, err := follower.State(ctx, ha.Stale)
	if err != nil {
		t.Fatal(err)
	}
	term := ha.Term(follower)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leaderID), Addr: []byte(hc.Member(l).Addr())}
	var ae raft.AppendEntriesResponse
	err = tr.AppendEntries(raft.ServerID(hc.ID(fi)), raft.ServerAddress(follower.Addr()), &raft.AppendEntriesRequest{
		RPCHeader: hdr, Term: term, PrevLogEntry: 0, PrevLogTerm: 0,
		Entries: []*raft.Log{{Index: s.Index + 1000, Term: term, Type: raft.LogConfiguration, Data: []byte("\x81\xa7Servers\x91\xc1")}},
	}, &ae)
	if err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Fatalf("garbage configuration: got %v, want a refusal saying it does not decode", err)
	}
	eventually(t, ctx, "the follower halts", func() bool { return ha.Halted(follower) != nil })
	if !errors.Is(ha.Halted(follower), ha.ErrHalted) || !logs.has("halting") {
		t.Fatalf("halt error %v, or no halting log line", ha.Halted(follower))
	}
	hc.Crash(fi)
	if err := hc.Restart(fi); err != nil {
		t.Fatalf("restart after the refused entry (a crash loop before): %v", err)
	}
	if err := putValue(ctx, hc.Member(fi), "after", 2); err != nil {
		t.Fatal(err)
	}
}

func TestRefusalHelloRefusedWithoutReason(t *testing.T) {
	t.Parallel()
	hc, _, ctx, _ := secureCluster(t, 1)
	addr := emptyRefuser(t, hc)
	cfg, err := hc.NewConfig("h5")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ha.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	// The dialing member got a nil connection and a nil error, and crashed
	// on the first use of the connection.
	err = ha.Call(ctx, c, addr, "ping")
	if err == nil || !strings.Contains(err.Error(), "refused without a reason") {
		t.Fatalf("got %v, want an error saying the peer refused without a reason", err)
	}
	t.Logf("refused: %v", err)
	jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Join(jctx, addr); err == nil {
		t.Fatal("joined through a server that refuses every hello")
	}
}

func TestRefusalInputValidation(t *testing.T) {
	t.Parallel()
	hc, _, ctx, l := secureCluster(t, 1)
	c := hc.Member(l)
	good := ha.VMSpec{DomainXML: "<domain type='kvm'><name>web1</name></domain>", MemoryKiB: 1 << 20, VCPUs: 2,
		MACs: []string{"52:54:00:00:00:01"}, Addrs: []string{"198.18.0.10", "2001:2::1"}}
	for _, tt := range []struct {
		name  string
		vm    ha.VM
		field string
	}{
		{"empty name", ha.VM{Spec: good}, "Name"},
		{"negative vCPUs", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.VCPUs = -1; return s }()}, "Spec.VCPUs"},
		{"absurd vCPUs", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.VCPUs = 1 << 20; return s }()}, "Spec.VCPUs"},
		{"absurd memory", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.MemoryKiB = 1 << 62; return s }()}, "Spec.MemoryKiB"},
		{"malformed MAC", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.MACs = []string{"52:54:00:zz"}; return s }()}, "Spec.MACs[0]"},
		{"malformed address", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.Addrs = []string{"198.18.0.1", "10.0.0.300"}; return s }()}, "Spec.Addrs[1]"},
		{"unparsable domain XML", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.DomainXML = "<domain><name>a</domain>"; return s }()}, "Spec.DomainXML"},
		{"not a domain", ha.VM{Name: "a", Spec: func() ha.VMSpec { s := good; s.DomainXML = "<network/>"; return s }()}, "Spec.DomainXML"},
		{"negative restarts", ha.VM{Name: "a", Spec: good, Policy: ha.Policy{MaxLocalRestarts: -1}}, "Policy.MaxLocalRestarts"},
	} {
		err := c.PutVM(ctx, tt.vm)
		if !errors.Is(err, ha.ErrRefused) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: got %v, want ErrRefused naming %s", tt.name, err, tt.field)
		}
	}
	if err := c.PutVM(ctx, ha.VM{Name: "web1", Spec: good}); err != nil {
		t.Fatalf("a good VM: %v", err)
	}
	if err := c.PutVolume(ctx, ha.Volume{}); !errors.Is(err, ha.ErrRefused) || !strings.Contains(err.Error(), "Volume ID") {
		t.Errorf("volume without ID: %v", err)
	}
	// A host reporting no capacity is refused, never counted as unlimited.
	me := hc.ID(l)
	h := hostOf(t, ctx, c, me)
	_, err := attacker(t, hc, me).Call(ctx, c.Addr(), "apply", forged(t, "host.register", map[string]any{"host": me, "epoch": h.Epoch, "capacity": map[string]any{"memory_kib": 0, "vcpus": 0}}), "")
	if !errors.Is(err, ha.ErrRefused) || !strings.Contains(err.Error(), "Capacity.MemoryKiB") {
		t.Fatalf("zero capacity: got %v, want a refusal naming Capacity.MemoryKiB", err)
	}
}

func TestRefusalOversizedRequest(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, l := secureCluster(t, 1)
	c := hc.Member(l)
	big := append([]byte(`{"op":"apply","data":"`), bytes.Repeat([]byte("A"), 9<<20)...)
	out, err := attacker(t, hc, hc.ID(l)).RawRPC(ctx, c.Addr(), append(big, `"}`...))
	if !bytes.Contains(out, []byte("size limit")) {
		t.Fatalf("oversized request: answer %q, err %v", out, err)
	}
	if !logs.has("oversized") {
		t.Error("no log line for the oversized request")
	}
	if err := putValue(ctx, c, "after", 3); err != nil {
		t.Fatal(err)
	}
}

// emptyRefuser is a TLS server with a certificate of the cluster CA that
// answers every hello "refused" with an empty message (it crashed the
// dialing member once: a nil connection with a nil error).
func emptyRefuser(t *testing.T, hc *hatest.Cluster) string {
	t.Helper()
	cert, err := hc.CA().Issue("h8")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 512)
				_, _ = conn.Read(buf)
				// status refused, then "h8", "0" and "" as length-prefixed strings
				_, _ = conn.Write([]byte{1, 0, 2, 'h', '8', 0, 1, '0', 0, 0})
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// A member that was down while others joined meets a leader its own
// configuration does not name. It must still take that leader's entries
// (they name the leader): the members it knows vouch for the leader.
func TestSecurityLaggingMemberAcceptsANewLeader(t *testing.T) {
	t.Parallel()
	hc, logs, ctx, _ := secureCluster(t, 3)
	hc.Crash(2)
	for range 2 {
		if _, err := hc.Add(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Move the leadership to a member h3 has never heard of.
	for {
		l := waitLeader(t, ctx, hc)
		if l >= 3 {
			break
		}
		if err := hc.Member(l).TransferLeadership(ctx); err != nil {
			t.Logf("transfer: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("leadership never reached h4 or h5")
		}
	}
	if err := putValue(ctx, hc.Member(3), "while-away", 9); err != nil {
		t.Fatal(err)
	}
	if err := hc.Restart(2); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if v, ok, _ := getValue(wctx, hc.Member(2), "while-away", ha.Stale); ok && v == 9 {
			break
		}
		if wctx.Err() != nil {
			logs.dump(t, "h3", "refused", "vouch", "dropped")
			t.Fatal("h3 never caught up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !logs.has("another member vouched for it") {
		t.Error("h3 caught up without a vouch: the test did not meet the case")
	}
}

// TestSecurityRevokedCertificateRefused: a certificate that the members'
// TLSConfig.VerifyPeer refuses (a revocation list, as examples/xenha wires
// it) gets no request through on the cluster port, while one it accepts
// does. Without the check, a revoked operator could still write.
func TestSecurityRevokedCertificateRefused(t *testing.T) {
	t.Parallel()
	var revoked sync.Map // common names
	check := func(c *x509.Certificate) error {
		if _, ok := revoked.Load(c.Subject.CommonName); ok {
			return errors.New("revoked")
		}
		return nil
	}
	hc := tcpCluster(t, 3, hatest.WithConfig(func(_ int, cfg *ha.Config) { cfg.TLS.VerifyPeer = check }))
	ctx := ctxT(t, 90*time.Second)
	leader := hc.Member(waitLeader(t, ctx, hc))
	put := func(name string) []byte {
		return forged(t, "vm.put", map[string]any{"vm": map[string]any{"name": name, "spec": map[string]any{"memory_kib": 1024}, "policy": map[string]any{"restart": "off"}}})
	}
	for _, who := range []string{"alice", "bob"} {
		tc, err := hc.CA().Operator(who)
		if err != nil {
			t.Fatal(err)
		}
		if who == "bob" {
			revoked.Store(who, true)
		}
		_, err = ha.NewAttacker(tc, hatest.ClusterID, who).Call(ctx, leader.Addr(), "apply", put(who+"-vm"), "")
		switch {
		case who == "alice" && err != nil:
			t.Fatalf("alice's vm.put: %v", err)
		case who == "bob" && err == nil:
			t.Fatal("bob's revoked certificate wrote a VM")
		}
		t.Logf("%s: %v", who, err)
	}
	if _, ok, _ := getValue(ctx, leader, "bob-vm", ha.Consistent); ok {
		t.Fatal("the revoked operator's VM was stored")
	}
	if _, ok, _ := getValue(ctx, leader, "alice-vm", ha.Consistent); !ok {
		t.Fatal("alice's VM was not stored")
	}
}
