package ipmi_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// goBMC is an in-process BMC (go-ipmi's reference server) on a loopback
// port, with a mock chassis whose power the test reads directly.
type goBMC struct {
	port    int
	chassis *mock.Chassis
	stop    func()
}

const (
	goUser     = "fencer"
	goPassword = "in-process-Pa55"
)

func startGoBMC(t testing.TB, suites ...types.CipherSuiteID) *goBMC {
	return startGoBMCWith(t, nil, suites...)
}

// startGoBMCWith lets the test set chassis hooks before the server runs (the
// mock's hook field is not safe to set later).
func startGoBMCWith(t testing.TB, setPower func(on bool) error, suites ...types.CipherSuiteID) *goBMC {
	t.Helper()
	h := mock.New()
	ch := h.Chassis().(*mock.Chassis)
	if err := ch.SetPower(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ch.SetPowerHook = setPower
	info := bmc.DeviceInfo{DeviceID: 32, DeviceRevision: 1, FirmwareMajor: 1, IPMIVersion: 0x20, ManufacturerID: 0x000157, ProductID: 1}
	var guid [16]byte
	copy(guid[:], "xenha-test-bmc")
	opts := []bmc.Option{bmc.WithClock(clock.Real),
		bmc.WithV15AuthTypes([]bmc.V15AuthType{bmc.V15AuthTypeMD5})}
	if len(suites) > 0 {
		opts = append(opts, bmc.WithCipherSuites(suites))
	}
	b := bmc.New(info, guid, h, opts...)
	u, err := b.Users.Add(2, goUser)
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(goPassword))
	u.Enabled = true
	u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer(b, udp.Wrap(pc))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	g := &goBMC{port: pc.LocalAddr().(*net.UDPAddr).Port, chassis: ch}
	stopped := false
	g.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		_ = srv.Close()
		_ = pc.Close()
		<-done
	}
	t.Cleanup(g.stop)
	return g
}

func (g *goBMC) on(t testing.TB) bool {
	on, err := g.chassis.PowerState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return on
}

func writePassword(t testing.TB, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
