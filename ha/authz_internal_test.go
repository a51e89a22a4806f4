package ha

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestSecurityVouchedStreamOutlivesTheVouch: a Raft stream from a peer that
// another member vouched for stays open past vouchTTL (a long snapshot from a
// new leader), while new requests need a fresh vouch, and it closes once this
// member learns that the peer left.
func TestSecurityVouchedStreamOutlivesTheVouch(t *testing.T) {
	v := &memberView{self: "h1"}
	v.set(raft.Configuration{Servers: []raft.Server{{ID: "h1"}, {ID: "h2"}}})
	v.vouch("h4")
	v.mu.Lock()
	v.vouched["h4"] = time.Now().Add(-time.Second) // the vouch ran out
	v.mu.Unlock()
	if v.mayAct("h4") {
		t.Error("an expired vouch still admits new requests")
	}
	if !v.mayStay("h4") {
		t.Error("the stream of a vouched-for peer was cut when the vouch ran out")
	}
	if v.mayStay("h9") {
		t.Error("a peer nobody vouched for may keep a stream")
	}
	v.set(raft.Configuration{Servers: []raft.Server{{ID: "h1"}, {ID: "h2"}, {ID: "h4"}}})
	v.set(raft.Configuration{Servers: []raft.Server{{ID: "h1"}, {ID: "h2"}}})
	if v.mayStay("h4") {
		t.Error("the stream of a peer that left stays open")
	}
}
