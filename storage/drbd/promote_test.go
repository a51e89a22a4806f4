package drbd

import (
	"errors"
	"os"
	"testing"

	"github.com/xenha/xenha/storage"
)

func sampleResource(t *testing.T, name string) Resource {
	t.Helper()
	data, err := os.ReadFile("testdata/samples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseStatusJSON(data)
	if err != nil || len(rs) != 1 {
		t.Fatalf("%s: %v, %d resources", name, err, len(rs))
	}
	return rs[0]
}

func TestCheckPromoteOnSamples(t *testing.T) {
	yes := true
	for _, c := range []struct {
		sample string
		edit   func(*Resource)
		fenced string
		want   error // nil: may promote
	}{
		// As a Secondary seeing a Secondary, UpToDate peer: fine.
		{"status-json-healthy-2node.json", func(r *Resource) { r.Role = "Secondary" }, "", nil},
		{"status-json-peer-lost-3node.json", nil, "", storage.ErrInUse},              // node-a Primary
		{"status-json-peer-lost-3node.json", nil, "node-a,node-c", storage.ErrInUse}, // fencing a host we see Primary proves nothing
		// node-a gone and fenced; node-c Connecting and not fenced: refused.
		{"status-json-peer-lost-3node.json", func(r *Resource) { r.Connections[0].PeerRole = "Unknown"; r.Connections[0].State = "Connecting" }, "node-a", storage.ErrInUse},
		{"status-json-peer-lost-3node.json", func(r *Resource) { r.Connections[0].PeerRole = "Unknown"; r.Connections[0].State = "Connecting" }, "node-a,node-c", nil},
		{"status-json-standalone-noquorum.json", nil, "node-b", ErrNoQuorum},
		{"status-json-standalone-noquorum.json", func(r *Resource) { r.Devices[0].Quorum = &yes }, "node-b", ErrNoGoodData}, // Inconsistent here
		{"status-json-standalone-noquorum.json", func(r *Resource) { r.Devices[0].Quorum = &yes; r.Devices[0].Disk = "UpToDate" }, "", storage.ErrInUse},
		// The peer's disk is Outdated (resource-level fencing did it): fine.
		{"status-json-standalone-noquorum.json", func(r *Resource) {
			r.Devices[0].Quorum, r.Devices[0].Disk = &yes, "UpToDate"
			r.Connections[0].PeerDevices[0].PeerDisk = "Outdated"
		}, "", nil},
		{"status-json-standalone-noquorum.json", func(r *Resource) {
			r.Devices[0].Quorum, r.Devices[0].Disk = &yes, "UpToDate"
			r.Connections[0].SplitBrain = true
		}, "node-b", storage.ErrSplitBrain},
		{"status-json-diskless-client.json", nil, "", storage.ErrInUse}, // node-a Primary
		{"status-json-diskless-client.json", func(r *Resource) { r.Connections[0].PeerRole = "Secondary" }, "", nil},
		{"status-json-diskless-client.json", func(r *Resource) {
			r.Connections[0].PeerRole = "Secondary"
			r.Connections[0].PeerDevices[0].PeerDisk = "Inconsistent"
		}, "", ErrNoGoodData},
		{"status-json-healthy-2node.json", func(r *Resource) { r.Devices = nil }, "", storage.ErrNotFound},
	} {
		r := sampleResource(t, c.sample)
		if c.edit != nil {
			c.edit(&r)
		}
		p, err := parse(volume(1, "fenced", c.fenced))
		if err != nil {
			t.Fatal(err)
		}
		err = checkPromote(r, 0, p.fenced)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s fenced=%q: %v; want %v", c.sample, c.fenced, err, c.want)
		}
	}
}
