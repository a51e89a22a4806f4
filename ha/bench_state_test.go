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
// volume, placed round-robin and observed running.
func scaleState(hosts, vms int) *State {
	s := newState("bench")
	for i := range hosts {
		id := fmt.Sprintf("h%02d", i+1)
		s.Hosts[id] = &Host{ID: id, Addr: fmt.Sprintf("198.18.0.%d:7946", i+1), Role: RoleVoter,
			Capacity: Capacity{MemoryKiB: 4 << 30, VCPUs: 4096}, State: HostOnline, Epoch: 1}
	}
	body := strings.Repeat("<!-- devices, disks, interfaces -->", 56)
	for i := range vms {
		name := fmt.Sprintf("vm%05d", i)
		host := fmt.Sprintf("h%02d", i%hosts+1)
		vol := "disk-" + name
		s.Volumes[vol] = &Volume{Volume: storage.Volume{ID: vol, Kind: "iscsi", Generation: 1,
			Params: map[string]string{"portal": "198.18.1.1:3260", "iqn": "iqn.2026-11.org.example:" + name, "lun": "1"}}, Writer: host}
		s.VMs[name] = &VM{Name: name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			Spec: VMSpec{DomainXML: "<domain type='xen'><name>" + name + "</name>" + body + "</domain>", MemoryKiB: 2 << 20, VCPUs: 2,
				MACs:  []string{fmt.Sprintf("52:54:00:%02x:%02x:01", i>>8&0xff, i&0xff), fmt.Sprintf("52:54:00:%02x:%02x:02", i>>8&0xff, i&0xff)},
				Addrs: []string{fmt.Sprintf("198.19.%d.%d", i>>8&0xff, i&0xff)}, Volumes: []string{vol}},
			Policy: Policy{Restart: RestartAlways, Priority: i % 3, AntiAffinity: fmt.Sprintf("g%d", i/8)},
			Host:   host, OwnerEpoch: 1, Observed: Observed{Host: host, State: xenctl.StateRunning}}
	}
	return s
}

// BenchmarkStateScale measures what the size of the pool costs the leader:
// the copy of the state its controller takes every KeepAlive/2 (and Raft's
// snapshot takes between applies), encoding the snapshot (in the
// background), placing one dead host's VMs, and the heap per VM.
//
//	go test -run '^$' -bench BenchmarkStateScale ./ha/
func BenchmarkStateScale(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		const hosts = 16
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
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
			// One host dies: its VMs need places on the other 15.
			dead := "h01"
			s.Hosts[dead].State, s.Hosts[dead].Epoch = HostFenced, 2
			var want []string
			for name, vm := range s.VMs {
				if vm.Host == dead {
					want = append(want, name)
				}
			}
			b.Run("clone", func(b *testing.B) {
				for b.Loop() {
					if _, err := cloneState(s); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("place-one-host", func(b *testing.B) {
				for b.Loop() {
					if p := place(s, want); len(p.Assign) != len(want) {
						b.Fatalf("placed %d of %d", len(p.Assign), len(want))
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
		})
	}
}
