// Package ipmitest runs an in-process IPMI BMC on a loopback UDP port, for
// tests, demos and labs that fence through [github.com/xenha/xenha/fence/ipmi]
// without hardware or ipmi_sim. The BMC is go-ipmi's reference server over an
// in-memory chassis; it speaks IPMI 1.5 and 2.0 (RMCP+) like a real one.
//
// What makes it useful for HA tests is [WithPowerHook]: when a fencer powers
// the chassis off, the hook runs, so the simulated host can stop for real
// (its cluster member closes, its hypervisor goes away).
package ipmitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport"
	"github.com/bougou/go-ipmi/pkg/transport/udp"

	"github.com/xenha/xenha/fence/ipmi"
)

// User is the BMC's administrator account.
const User = "fencer"

// BMC is a running in-process BMC. Its methods are safe for concurrent use.
type BMC struct {
	// Port is the BMC's UDP port on 127.0.0.1.
	Port int
	// Password is User's password, random per BMC.
	Password string

	chassis *mock.Chassis
	hook    func(on bool)
	ignore  bool       // power commands accepted, chassis unchanged
	hookMu  sync.Mutex // serializes hook calls in power order

	cancel context.CancelFunc
	srv    *server.Server
	pc     *net.UDPConn
	done   chan struct{}
	once   sync.Once
}

// Option configures Start.
type Option func(*BMC)

// WithPowerHook calls fn after every power change made through the BMC
// (fn(false) when a fencer powers the host off). fn runs outside the BMC's
// locks, before the BMC answers the request, so a fencer that then reads the
// power sees the host already stopped.
func WithPowerHook(fn func(on bool)) Option { return func(b *BMC) { b.hook = fn } }

// WithPowerIgnored makes a broken BMC: it accepts power commands and answers
// that they were carried out, but the chassis stays on (SetPower changes
// nothing either, and the power hook does not run). A fencer must then fail
// to verify, never prove.
func WithPowerIgnored() Option { return func(b *BMC) { b.ignore = true } }

// Start runs a BMC whose chassis is powered on, listening on 127.0.0.1 at a
// free port. Close stops it.
func Start(opts ...Option) (*BMC, error) {
	var pw [8]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, fmt.Errorf("ipmitest: password: %w", err)
	}
	b := &BMC{Password: hex.EncodeToString(pw[:]), done: make(chan struct{})}
	for _, o := range opts {
		o(b)
	}
	h := mock.New()
	b.chassis = h.Chassis().(*mock.Chassis)
	b.chassis.On = true
	// The mock calls its hook under its own lock and lets the hook decide
	// the power; record it there, and run the user's hook after.
	var pending []bool
	var pendingMu sync.Mutex
	b.chassis.SetPowerHook = func(on bool) error {
		if b.ignore {
			return nil
		}
		b.chassis.On = on
		pendingMu.Lock()
		pending = append(pending, on)
		pendingMu.Unlock()
		return nil
	}
	flush := func() {
		pendingMu.Lock()
		p := pending
		pending = nil
		pendingMu.Unlock()
		if b.hook == nil {
			return
		}
		b.hookMu.Lock()
		defer b.hookMu.Unlock()
		for _, on := range p {
			b.hook(on)
		}
	}

	info := bmc.DeviceInfo{DeviceID: 32, DeviceRevision: 1, FirmwareMajor: 1, IPMIVersion: 0x20, ManufacturerID: 0x000157, ProductID: 1}
	var guid [16]byte
	copy(guid[:], "xenha-ipmitest")
	dev := bmc.New(info, guid, h, bmc.WithClock(clock.Real),
		bmc.WithV15AuthTypes([]bmc.V15AuthType{bmc.V15AuthTypeMD5}))
	u, err := dev.Users.Add(2, User)
	if err != nil {
		return nil, fmt.Errorf("ipmitest: add user: %w", err)
	}
	u.SetPassword([]byte(b.Password))
	u.Enabled = true
	u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("ipmitest: listen: %w", err)
	}
	b.pc = pc
	b.Port = pc.LocalAddr().(*net.UDPAddr).Port
	b.srv = server.NewServer(dev, &hookedConn{PacketConn: udp.Wrap(pc), after: flush})
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() { _ = b.srv.Serve(ctx); close(b.done) }()
	return b, nil
}

// Target is the fence/ipmi target for this BMC (lanplus; the password comes
// from PasswordFile or the fencer's PasswordFunc, see Passwords).
func (b *BMC) Target() ipmi.Target {
	return ipmi.Target{Address: "127.0.0.1", Port: b.Port, User: User}
}

// On reports the chassis power.
func (b *BMC) On() bool {
	on, _ := b.chassis.PowerState(context.Background())
	return on
}

// SetPower switches the chassis power as a person at the machine would (the
// power hook runs too): SetPower(false) pulls the plug.
func (b *BMC) SetPower(on bool) {
	_ = b.chassis.SetPower(context.Background(), on)
	b.hookMu.Lock()
	defer b.hookMu.Unlock()
	if b.hook != nil {
		b.hook(on)
	}
}

// Close stops the BMC. It is safe to call more than once.
func (b *BMC) Close() error {
	b.once.Do(func() {
		b.cancel()
		_ = b.srv.Close()
		_ = b.pc.Close()
		<-b.done
	})
	return nil
}

// Passwords returns an ipmi.PasswordFunc that answers for the given hosts'
// BMCs (cluster host ID → BMC).
func Passwords(bmcs map[string]*BMC) ipmi.PasswordFunc {
	return func(_ context.Context, host string) (string, error) {
		b, ok := bmcs[host]
		if !ok {
			return "", fmt.Errorf("ipmitest: no BMC for host %q", host)
		}
		return b.Password, nil
	}
}

// hookedConn runs after before each reply, so that power hooks complete
// before the fencer hears that the command was carried out.
type hookedConn struct {
	transport.PacketConn
	after func()
}

func (c *hookedConn) WriteTo(data []byte, addr net.Addr) (int, error) {
	c.after()
	return c.PacketConn.WriteTo(data, addr)
}
