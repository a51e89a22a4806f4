package ha

import (
	"errors"
	"testing"

	"github.com/xenha/xenha/xenctl"
)

// A VM that may still run goes only once its host said it stopped from a
// view that includes the deletion; until then it is stopped, unplaced and
// cannot be put back.
func TestVMDeleteWaitsForTheHostsReport(t *testing.T) {
	s := &State{
		Hosts: map[string]*Host{"h1": {ID: "h1", State: HostOnline, Epoch: 1}},
		VMs:   map[string]*VM{"a": {Name: "a", Host: "h1", OwnerEpoch: 1, Assigned: 5}},
	}
	res, err := (&vmDelete{Name: "a"}).apply(s, applyMeta{Index: 10})
	if err != nil || res != vmDeleting {
		t.Fatalf("delete of a VM that h1 never reported: %v, %v; want it marked deleting", res, err)
	}
	vm := s.VMs["a"]
	if vm == nil || !vm.Deleting || !vm.Stopped || vm.Host != "" || vm.Released != 10 || vm.Observed.Host != "h1" {
		t.Fatalf("VM after the first delete: %+v", vm)
	}
	if _, err := (&vmPut{VM: VM{Name: "a"}}).apply(s, applyMeta{Index: 11}); !errors.Is(err, ErrRefused) {
		t.Fatalf("put of a VM being deleted: %v, want refused", err)
	}
	// A report from before the deletion does not do.
	vm.Observed = Observed{Host: "h1", State: xenctl.StateShutoff, ViewIndex: 9}
	if res, err := (&vmDelete{Name: "a"}).apply(s, applyMeta{Index: 12}); err != nil || res != vmDeleting {
		t.Fatalf("delete after an old report: %v, %v", res, err)
	}
	vm.Observed = Observed{Host: "h1", State: xenctl.StateShutoff, ViewIndex: 12}
	if _, err := (&vmDelete{Name: "a"}).apply(s, applyMeta{Index: 13}); err != nil || s.VMs["a"] != nil {
		t.Fatalf("delete after h1 reported it stopped: %v, VM %+v", err, s.VMs["a"])
	}
}
