package libvirt_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/libvirt"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

const uuidB = "6f1c1f3e-2a2b-4c3d-8e9f-0a1b2c3d4e5f"

// outer returns a simulated outer hypervisor running host-b as a domain.
func outer(t *testing.T) *xenctltest.Host {
	h := xenctltest.New("lab")
	if _, err := h.Define(t.Context(), xenctltest.DomainXML("host-b", uuidB, 1<<20, 2)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context(), "host-b"); err != nil {
		t.Fatal(err)
	}
	return h
}

func isOff(h *xenctltest.Host) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		return len(h.World().Active("host-b")) == 0, nil
	}
}

func TestConformance(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		lab := outer(t)
		dead := outer(t)
		dead.StopDaemon()
		f, err := libvirt.New(map[string]libvirt.Target{
			"host-b": {Hypervisor: lab, Domain: "host-b", Label: "lab"},
			"dead":   {Hypervisor: dead, Domain: "host-b", Label: "dead-lab"},
		}, libvirt.WithPollInterval(5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return fencetest.Subject{Fencer: f, Host: "host-b", Unreachable: "dead", IsOff: isOff(lab)}
	})
}

func TestFailures(t *testing.T) {
	lab := outer(t)
	f, _ := libvirt.New(map[string]libvirt.Target{
		"host-b":  {Hypervisor: lab, Domain: "host-b", Label: "qemu:///system"},
		"typo":    {Hypervisor: lab, Domain: "host-bb"},
		"transit": {Hypervisor: lab, Domain: "gone", Transient: true},
	}, libvirt.WithVerifyTimeout(100*time.Millisecond), libvirt.WithPollInterval(5*time.Millisecond))
	ctx := t.Context()

	boom := errors.New("permission denied")
	remove := lab.Inject(xenctltest.Fault{Method: xenctltest.MethodDestroy, Err: boom})
	if _, err := f.Fence(ctx, "host-b"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "qemu:///system") {
		t.Fatalf("destroy refused: %v", err)
	}
	remove()
	if len(lab.World().Active("host-b")) != 1 {
		t.Fatal("failed destroy stopped the domain")
	}

	// A hung libvirtd: the call outlives the fencing deadline.
	lab.Inject(xenctltest.Fault{Method: xenctltest.MethodDestroy, Hang: true, Times: 1})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	p, err := f.Fence(short, "host-b")
	cancel()
	if !errors.Is(err, fence.ErrUnreachable) || p != (fence.Proof{}) {
		t.Fatalf("hung destroy: %v, %v; want ErrUnreachable and no proof", p, err)
	}

	if _, err := f.Fence(ctx, "typo"); err == nil || errors.Is(err, fence.ErrUnknownHost) || !strings.Contains(err.Error(), "domain name") {
		t.Fatalf("misconfigured domain: %v; want a configuration error, not a proof", err)
	}
	p, err = f.Fence(ctx, "transit")
	if err != nil || !strings.Contains(p.Evidence, "vanished") || p.Kind != fence.ProofUnverified {
		t.Fatalf("transient domain never seen: %v (%v), %v; want an unverified proof", p, p.Kind, err)
	}
	if p, err := f.Fence(ctx, "host-b"); err != nil || p.Kind != fence.ProofVerifiedOff {
		t.Fatalf("domain destroyed and read back: %v (%v), %v; want a verified power-off", p, p.Kind, err)
	}
	if _, err := libvirt.New(map[string]libvirt.Target{"x": {Domain: "d"}}); err == nil {
		t.Fatal("New accepted a target without hypervisor")
	}
	var _ xenctl.Hypervisor = lab
}
