package main

import (
	"testing"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// The role hypervisor keeps the contract every Hypervisor keeps, so the
// host agent can drive it like libvirt.
func TestRoleConformance(t *testing.T) {
	xenctltest.Run(t, func(t *testing.T) xenctl.Hypervisor { return newRole("h1") })
}

func TestRoleVMsAndGateways(t *testing.T) {
	gws := []Gateway{
		{Name: "platform-a", MAC: "02:58:47:00:00:01", Addrs: []string{"198.18.5.1"}},
		{Name: "platform-b", MAC: "02:58:47:00:00:02", Addrs: []string{"198.18.6.1", "2001:2::1"}},
	}
	if err := checkGateways(gws); err != nil {
		t.Fatal(err)
	}
	vms := roleVMs(gws, "xen-a")
	again := roleVMs(gws, "xen-a")
	for i, vm := range vms {
		spec, err := xenctl.ParseDomainXML(vm.Spec.DomainXML)
		if err != nil {
			t.Fatalf("role %s: %v", vm.Name, err)
		}
		if spec.Name != vm.Name || spec.UUID != vm.UUID || vm.UUID != again[i].UUID {
			t.Fatalf("role %s: definition %+v, UUID %s then %s", vm.Name, spec, vm.UUID, again[i].UUID)
		}
		if len(vm.Spec.MACs) != 1 || vm.Spec.MACs[0] != gws[i].MAC || len(vm.Spec.Addrs) != len(gws[i].Addrs) {
			t.Fatalf("role %s announces %v from %v; want only its own gateway's", vm.Name, vm.Spec.Addrs, vm.Spec.MACs)
		}
		if len(vm.Policy.Preferred) != 1 || vm.Policy.Preferred[0] != "xen-a" {
			t.Fatalf("role %s prefers %v", vm.Name, vm.Policy.Preferred)
		}
	}
	if vms[0].UUID == vms[1].UUID {
		t.Fatal("two roles share a UUID")
	}
	for _, bad := range [][]Gateway{
		nil,
		{{Name: "", MAC: "02:58:47:00:00:01"}},
		{{Name: "a", MAC: "not-a-mac"}},
		{{Name: "a", MAC: "02:58:47:00:00:01"}, {Name: "b", MAC: "02:58:47:00:00:01"}},
		{{Name: "a", MAC: "02:58:47:00:00:01"}, {Name: "a", MAC: "02:58:47:00:00:02"}},
		{{Name: "a", MAC: "02:58:47:00:00:01", Addrs: []string{"198.18.5"}}},
	} {
		if err := checkGateways(bad); err == nil {
			t.Errorf("checkGateways(%+v) accepted", bad)
		}
	}
}
