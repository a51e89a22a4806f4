package ha

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Fuzz targets for the decoders of peer input not covered elsewhere (the
// hello: FuzzHello; commands: FuzzDecodeCommand, FuzzFailoverCommands;
// snapshots: FuzzDecodeSnapshot).

// FuzzRPCRequest runs a cluster RPC request through everything a member does
// before it would touch Raft: the size-limited decoder, the authorization of
// a member and of an operator, and for writes the command's decoding, the
// proposer check and the input checks. None may panic.
func FuzzRPCRequest(f *testing.F) {
	put, _ := encodeCommand(&vmPut{VM: VM{Name: "web1", Spec: VMSpec{DomainXML: "<domain/>", MACs: []string{"52:54:00:00:00:01"}}}}, "r1", time.Unix(1e9, 0))
	fence, _ := encodeCommand(&fenceCmd{Host: "h2", Epoch: 1, Method: "manual", Manual: true, Operator: "alice"}, "r2", time.Unix(1e9, 0))
	for _, r := range []rpcRequest{
		{Op: opApply, Data: put}, {Op: opApply, Data: fence}, {Op: opJoin, Token: "t", Host: &Host{ID: "h9"}},
		{Op: opRemove, ID: "h2"}, {Op: opReadIndex}, {Op: opPing}, {Op: opMember, ID: "h3"},
	} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"op":"apply","data":"` + string(bytes.Repeat([]byte("A"), 64)) + `"}`))
	c := &Cluster{cfg: Config{ID: "h1"}, fsm: newFSM("c1", nil, nil), log: slog.New(slog.DiscardHandler), members: memberView{self: "h1"}}
	c.members.set(raft.Configuration{Servers: []raft.Server{{ID: "h2", Address: "a"}, {ID: "h3", Address: "b"}}})
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := &limitReader{r: bytes.NewReader(data)}
		lim.reset(maxRPCRequest)
		var req rpcRequest
		if err := json.NewDecoder(lim).Decode(&req); err != nil {
			return
		}
		for _, p := range []peerID{{id: "h2"}, {id: "alice", operator: true}, {id: "h9"}} {
			if err := c.authorizeRPC(p, req); err != nil || req.Op != opApply {
				continue
			}
			cmd, _, err := decodeCommand(req.Data)
			if err != nil {
				continue
			}
			if mayPropose(p, cmd) == nil {
				_ = validateCommand(cmd)
			}
		}
	})
}

// FuzzRPCResponse decodes a member's answer as a caller does.
func FuzzRPCResponse(f *testing.F) {
	f.Add([]byte(`{"index":7}`))
	f.Add([]byte(`{"code":17,"err":"ha: peer not authorized"}`))
	f.Add([]byte(`{"code":-3,"err":""}`))
	f.Add([]byte(`{"members":["h1","h2"],"leader":"127.0.0.1:1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := &limitReader{r: bytes.NewReader(data)}
		lim.reset(maxRPCResponse)
		var resp rpcResponse
		if err := json.NewDecoder(lim).Decode(&resp); err != nil {
			return
		}
		if resp.Err != "" && errFromWire("peer", resp.Code, resp.Err) == nil {
			t.Fatal("a refusal decoded to a nil error")
		}
		if errFromWire("peer", resp.Code, "") == nil {
			t.Fatal("an empty refusal decoded to a nil error")
		}
	})
}

// FuzzDecodeConfiguration: a Raft configuration from a peer or the log is
// decoded without Raft's panic, and what decodes round-trips.
func FuzzDecodeConfiguration(f *testing.F) {
	f.Add(raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "h1", Address: "127.0.0.1:7946"}}}))
	f.Add([]byte{0x81, 0xc1})
	f.Add([]byte("\x81\xa7Servers\x91\xc1"))
	f.Add([]byte{0x81, 0xa7, 'S', 'e', 'r', 'v', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeConfiguration(data)
		if err != nil {
			if checkEntries([]*raft.Log{{Type: raft.LogConfiguration, Data: data}}) == nil {
				t.Fatal("checkEntries passed what decodeConfiguration refused")
			}
			return
		}
		again, err := decodeConfiguration(raft.EncodeConfiguration(cfg))
		if err != nil || len(again.Servers) != len(cfg.Servers) {
			t.Fatalf("round trip: %v, %d servers of %d", err, len(again.Servers), len(cfg.Servers))
		}
	})
}

// FuzzCheckDomainXML: the well-formedness check never panics, and accepts
// only documents with a single <domain> root.
func FuzzCheckDomainXML(f *testing.F) {
	f.Add("<domain type='kvm'><name>a</name></domain>")
	f.Add("<domain><name>a</domain>")
	f.Add("<network/>")
	f.Add("<?xml version='1.0'?><!-- c --><domain/>")
	f.Add("<domain/><domain/>")
	f.Fuzz(func(t *testing.T, x string) {
		if checkDomainXML(x) != nil {
			return
		}
		if !bytes.Contains([]byte(x), []byte("<domain")) {
			t.Fatalf("accepted %q, which has no <domain", x)
		}
	})
}

// FuzzBoltFile: whatever raft.db holds, the start-up check returns an error
// or nil and never panics.
func FuzzBoltFile(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 8192))
	f.Add(bytes.Repeat([]byte{0xed, 0xda, 0x0c, 0xed, 2, 0, 0, 0, 0, 16, 0, 0}, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "raft.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = checkBolt(path)
	})
}
