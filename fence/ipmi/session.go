package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/xenha/xenha/fence"
)

const (
	powerDown  = chassis.ChassisControlPowerDown
	powerUp    = chassis.ChassisControlPowerUp
	powerCycle = chassis.ChassisControlPowerCycle
)

// closeTimeout bounds the courtesy Close Session after an operation; a BMC
// that does not answer it frees the session on its own timeout.
const closeTimeout = time.Second

// session is one authenticated IPMI session with a host's BMC.
type session struct {
	f    *Fencer
	host string
	t    Target
	pw   string
	c    *client.Client
}

// connect opens one session, with one cipher suite (negative: negotiate).
func (f *Fencer) connect(ctx context.Context, t Target, pw string, suite int) (*client.Client, error) {
	c, err := client.NewClient(t.Address, t.port(), t.User, pw)
	if err != nil {
		return nil, err
	}
	c.WithInterface(client.Interface(t.iface())).WithTimeout(f.timeout).WithRetry(f.retries)
	if t.Privilege == "operator" {
		c.WithMaxPrivilegeLevel(types.PrivilegeLevelOperator)
	}
	if suite >= 0 {
		c.WithCipherSuiteID(types.CipherSuiteID(suite))
	}
	if err := c.Connect(ctx); err != nil {
		// Close frees the socket; with a canceled context it does not wait
		// for a Close Session the BMC will never see.
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = c.Close(dead)
		return nil, err
	}
	return c, nil
}

// open resolves the host's target and password and opens a session.
func (f *Fencer) open(ctx context.Context, host, step string) (*session, error) {
	t, err := f.target(host, step)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &fence.Error{Host: host, Method: Method, Step: step, Err: err}
	}
	pw, err := f.password(ctx, host, t)
	if err != nil {
		return nil, &fence.Error{Host: host, Method: Method, Step: "password", Err: err}
	}
	s := &session{f: f, host: host, t: t, pw: pw}
	// Each cipher suite gets a fresh client: a client whose handshake failed
	// half-way does not reliably recover for the next suite.
	suites := t.CipherSuites
	if len(suites) == 0 {
		suites = []int{-1} // let the client negotiate
	}
	var rejections []string
	var c *client.Client
	for _, suite := range suites {
		c, err = f.connect(ctx, t, pw, suite)
		if err == nil {
			break
		}
		if ctx.Err() != nil || silentAtFirstStep(err) {
			return nil, s.fail(ctx, step, err)
		}
		label := "negotiated suite"
		if suite >= 0 {
			label = fmt.Sprintf("cipher suite %d", suite)
		}
		rejections = append(rejections, fmt.Sprintf("%s: %v", label, scrub(err, pw)))
	}
	if err != nil {
		return nil, &fence.Error{Host: host, Method: Method, Step: step,
			Err: fmt.Errorf("BMC %s: %w: %s", t, ErrRejected, strings.Join(rejections, "; "))}
	}
	s.c = c
	f.log.Debug("ipmi session open", "host", host, "bmc", t.String())
	return s, nil
}

func (s *session) close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.c.Close(ctx); err != nil {
		s.f.log.Debug("ipmi close session", "host", s.host, "err", scrub(err, s.pw))
	}
}

// power reads the chassis power state.
func (s *session) power(ctx context.Context, step string) (bool, error) {
	res, err := s.c.GetChassisStatus(ctx)
	if err != nil {
		return false, s.fail(ctx, step, err)
	}
	return res.PowerIsOn, nil
}

func (s *session) control(ctx context.Context, step string, c chassis.ChassisControl) error {
	if _, err := s.c.ChassisControl(ctx, c); err != nil {
		return s.fail(ctx, step, err)
	}
	return nil
}

// waitPower polls the chassis status until it reports want, within the
// verify timeout. It returns the number of reads made.
func (s *session) waitPower(ctx context.Context, want bool) (int, error) {
	vctx, cancel := context.WithTimeout(ctx, s.f.verify)
	defer cancel()
	step := "verify off"
	if want {
		step = "verify on"
	}
	end, _ := vctx.Deadline()
	for polls := 1; ; polls++ {
		on, err := s.power(vctx, step)
		if err != nil {
			// The client's socket deadline is vctx's, and a read can fail on it
			// before vctx.Err() is set: ask the clock too, or a BMC that keeps
			// answering "on" would be reported silent.
			if ctx.Err() == nil && (vctx.Err() != nil || !time.Now().Before(end)) {
				break
			}
			return polls, err
		}
		if on == want {
			return polls, nil
		}
		t := time.NewTimer(s.f.poll)
		select {
		case <-t.C:
		case <-vctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			return polls, &fence.Error{Host: s.host, Method: Method, Step: step, Err: ctx.Err()}
		}
		if vctx.Err() != nil {
			break
		}
	}
	state := "on"
	if want {
		state = "off"
	}
	return 0, &fence.Error{Host: s.host, Method: Method, Step: step,
		Err: fmt.Errorf("BMC %s still reports power %s after %s: %w", s.t, state, s.f.verify, fence.ErrNotOff)}
}

// fail turns a client error into a *fence.Error naming the step, marks
// silence as fence.ErrUnreachable and removes the password from the text.
func (s *session) fail(ctx context.Context, step string, err error) error {
	err = scrub(err, s.pw)
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("BMC %s: %w (%v)", s.t, ctx.Err(), err)
	case silent(err):
		err = fmt.Errorf("BMC %s did not answer: %w (%v)", s.t, fence.ErrUnreachable, err)
	default:
		err = fmt.Errorf("BMC %s: %w", s.t, err)
	}
	return &fence.Error{Host: s.host, Method: Method, Step: step, Err: err}
}

// silentAtFirstStep reports whether a session set-up failed because the BMC
// never answered at all. A BMC that answered the first handshake step and
// then went quiet is reachable: many drop an activation with a wrong
// password instead of refusing it.
func silentAtFirstStep(err error) bool {
	msg := err.Error()
	first := strings.Contains(msg, "GetChannelAuthenticationCapabilities failed") ||
		strings.Contains(msg, "Get Channel Authentication Capabilities failed")
	return silent(err) && (first || !strings.Contains(msg, "failed"))
}

// silent reports whether err means the BMC never answered.
func silent(err error) bool {
	var ne net.Error
	var sc *scrubbed
	if errors.As(err, &sc) {
		return sc.silent
	}
	// go-ipmi reports a read deadline with no matching reply through an
	// unexported error; its text is all there is to go on.
	msg := err.Error()
	if strings.Contains(msg, "before UDP read deadline") || strings.Contains(msg, "no datagram matched before deadline") ||
		strings.Contains(msg, "UDP read timed out") {
		return true
	}
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// scrub returns err with every occurrence of the password masked. The
// client library's messages should never hold it, but a fence record is
// replicated and kept, so it is checked rather than trusted.
func scrub(err error, pw string) error {
	if err == nil || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), pw, "********")
	if len(pw) < 4 {
		// Masking a very short password would garble every word holding
		// its letters; withhold the message instead.
		msg = "BMC client error (message withheld: it contains the password's characters)"
	}
	return &scrubbed{msg: msg, sentinel: sentinelOf(err), silent: silent(err)}
}

// scrubbed keeps the classification of a scrubbed error, not its text.
type scrubbed struct {
	msg      string
	sentinel error
	silent   bool
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.sentinel }

func sentinelOf(err error) error {
	for _, s := range []error{context.Canceled, context.DeadlineExceeded, os.ErrDeadlineExceeded, syscall.ECONNREFUSED} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
