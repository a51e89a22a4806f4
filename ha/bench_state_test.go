package ha

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// scaleState builds a pool of hosts and VMs as the leader holds it: each VM
// with a libvirt definition of about 2 KiB, two MACs, an address and a
// volume, placed round-robin and observed running, in anti-affinity groups
// small enough that one host's VMs always have somewhere to go.
func scaleState(hosts, vms int) *State {
	s := newState("bench")
	for i := range hosts {
		id := fmt.Sprintf("h%03d", i+1)
		s.Hosts[id] = &Host{ID: id, Addr: fmt.Sprintf("198.18.%d.%d:7946", i/250, i%250+1), Role: RoleVoter,
			Capacity: Capacity{MemoryKiB: 4 << 30, VCPUs: 4096}, State: HostOnline, Epoch: 1}
	}
	group := min(8, hosts/2)
	body := strings.Repeat("<!-- devices, disks, interfaces -->", 56)
	for i := range vms {
		name := fmt.Sprintf("vm%05d", i)
		host := fmt.Sprintf("h%03d", i%hosts+1)
		vol := "disk-" + name
		s.Volumes[vol] = &Volume{Volume: storage.Volume{ID: vol, Kind: "iscsi", Generation: 1,
			Params: map[string]string{"portal": "198.18.1.1:3260", "iqn": "iqn.2026-11.org.example:" + name, "lun": "1"}}, Writer: host}
		s.VMs[name] = &VM{Name: name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			Spec: VMSpec{DomainXML: "<domain type='xen'><name>" + name + "</name>" + body + "</domain>", MemoryKiB: 2 << 20, VCPUs: 2,
				MACs:  []string{fmt.Sprintf("52:54:00:%02x:%02x:01", i>>8&0xff, i&0xff), fmt.Sprintf("52:54:00:%02x:%02x:02", i>>8&0xff, i&0xff)},
				Addrs: []string{fmt.Sprintf("198.19.%d.%d", i>>8&0xff, i&0xff)}, Volumes: []string{vol}},
			Policy: Policy{Restart: RestartAlways, Priority: i % 3, AntiAffinity: fmt.Sprintf("g%d", i/group)},
			Host:   host, OwnerEpoch: 1, Observed: Observed{Host: host, State: xenctl.StateRunning}}
	}
	return s
}

// planners are the placement codes BenchmarkStateScale measures; a new
// planner is measured beside today's by adding it here.
var planners = []struct {
	name string
	plan func(s *State, want []string) Placement
}{
	{"place", place},
}

// BenchmarkStateScale measures what the size of the pool costs the leader,
// for 100, 1,000 and 10,000 VMs on 8, 64 and 256 hosts: planning the
// failover of one dead host's VMs (per planner), the copy of the state its
// controller takes every KeepAlive/2 (and Raft's snapshot takes between
// applies), encoding a snapshot (in the background) and restoring one, the
// snapshot's size and the heap per VM.
//
//	go test -run '^$' -bench BenchmarkStateScale -benchtime 1x ./ha/
func BenchmarkStateScale(b *testing.B) {
	for _, hosts := range []int{8, 64, 256} {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("hosts=%d/vms=%d", hosts, n), func(b *testing.B) { benchScale(b, hosts, n) })
		}
	}
}

func benchScale(b *testing.B, hosts, n int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := scaleState(hosts, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	var snap bytes.Buffer
	if err := encodeSnapshot(&snap, s); err != nil {
		b.Fatal(err)
	}
	// One host dies: its VMs need places on the others.
	dead := "h001"
	s.Hosts[dead].State, s.Hosts[dead].Epoch = HostFenced, 2
	var want []string
	for name, vm := range s.VMs {
		if vm.Host == dead {
			want = append(want, name)
		}
	}
	for _, p := range planners {
		b.Run("plan-one-host/"+p.name, func(b *testing.B) {
			for b.Loop() {
				if got := p.plan(s, want); len(got.Assign) != len(want) {
					b.Fatalf("placed %d of %d: %v", len(got.Assign), len(want), got.Unplaced)
				}
			}
			b.ReportMetric(float64(len(want)), "vms-moved")
		})
	}
	b.Run("clone", func(b *testing.B) {
		for b.Loop() {
			if _, err := cloneState(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
			var w bytes.Buffer
			if err := encodeSnapshot(&w, s); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(snap.Len())/1024, "KiB/snapshot")
		b.ReportMetric(heap/float64(n), "heap-B/vm")
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	})
}
