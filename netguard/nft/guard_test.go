package nft_test

import (
	"testing"

	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/netguard/nft"
)

// guard returns a guard of the lab's host. Without WithBridge it finds the
// bridge to announce on from a VIF's port.
func (l *lab) guard(opts ...nft.Option) *nft.Guard {
	l.t.Helper()
	g, err := nft.New(append([]nft.Option{nft.WithNetNS(int(l.nsFd.Fd()))}, opts...)...)
	if err != nil {
		l.t.Fatal(err)
	}
	return g
}

// TestConformance runs the netguard conformance suite against a real kernel
// table, with pings through the bridge as evidence.
func TestConformance(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	netguardtest.Run(t, func(t *testing.T) netguard.Guard { return l.guard() },
		netguardtest.WithVIFs(l.vifs()...), netguardtest.WithProbe(l.probe))
}
