package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
)

// deadlines is a connection that records the deadlines set on it.
type deadlines struct {
	net.Conn
	mu  sync.Mutex
	set []time.Time
}

func (d *deadlines) SetDeadline(t time.Time) error {
	d.mu.Lock()
	d.set = append(d.set, t)
	d.mu.Unlock()
	return d.Conn.SetDeadline(t)
}

func (d *deadlines) calls() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.set...)
}

func pipe(t *testing.T) (*deadlines, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &deadlines{Conn: a}, b
}

func TestBindTakesContextDeadlineAndReleaseClearsIt(t *testing.T) {
	nc, _ := pipe(t)
	dl := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	release := Bind(ctx, nc)
	if got := nc.calls(); len(got) != 1 || !got[0].Equal(dl) {
		t.Fatalf("deadlines after Bind = %v, want [%v]", got, dl)
	}
	release()
	cancel() // after release, ctx's end no longer touches nc
	got := nc.calls()
	if len(got) != 2 || !got[1].IsZero() {
		t.Fatalf("deadlines after release and cancel = %v, want the context's, then none", got)
	}
}

func TestBindWithoutDeadlineSetsNone(t *testing.T) {
	nc, _ := pipe(t)
	release := Bind(context.Background(), nc)
	defer release()
	if got := nc.calls(); len(got) != 1 || !got[0].IsZero() {
		t.Fatalf("deadlines after Bind to a context without one = %v, want [zero]", got)
	}
}

// A cancel ends a read that is blocked on a server that never answers.
func TestCancelExpiresBlockedRead(t *testing.T) {
	nc, _ := pipe(t)
	ctx, cancel := context.WithCancel(context.Background())
	release := Bind(ctx, nc)
	defer release()
	errc := make(chan error, 1)
	go func() {
		_, err := nc.Read(make([]byte, 1))
		errc <- err
	}()
	cancel()
	err := <-errc
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cancel: %v, want os.ErrDeadlineExceeded", err)
	}
	terr := Timeout(ctx, "probe: read with pipe", err)
	if !errors.Is(terr, storage.ErrUnreachable) || !errors.Is(terr, context.Canceled) {
		t.Fatalf("Timeout = %v, want ErrUnreachable and context.Canceled", terr)
	}
}

func TestDialFailures(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.ClosedPort(t))
	_, _, err := Dial(context.Background(), addr, nil, "probe: connect to "+addr, "check the server")
	if !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("Dial(closed port) = %v, want ErrUnreachable", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "probe: connect to "+addr+": storage: storage unreachable (") || !strings.HasSuffix(msg, "); check the server") {
		t.Errorf("Dial(closed port) error %q: want what, the cause in parentheses, then the hint", msg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = Dial(ctx, addr, nil, "probe: connect to "+addr, "check the server")
	if !errors.Is(err, storage.ErrUnreachable) || !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "check the server") {
		t.Errorf("Dial with a cancelled context = %v, want ErrUnreachable and context.Canceled, no hint", err)
	}
}

func TestDialUsesGivenDialerAndBinds(t *testing.T) {
	nc, _ := pipe(t)
	var asked string
	dial := func(_ context.Context, addr string) (net.Conn, error) { asked = addr; return nc, nil }
	dl := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	got, release, err := Dial(ctx, "server:111", dial, "probe", "")
	if err != nil || got != nc || asked != "server:111" {
		t.Fatalf("Dial = %v, %v after dialing %q; want the given dialer's connection to server:111", got, err, asked)
	}
	release()
	if calls := nc.calls(); len(calls) != 2 || !calls[0].Equal(dl) || !calls[1].IsZero() {
		t.Fatalf("deadlines = %v, want the context's, then none after release", calls)
	}
}

func TestTimeoutAndBroken(t *testing.T) {
	live := context.Background()
	if err := Timeout(live, "x", io.EOF); err != nil {
		t.Errorf("Timeout(EOF) = %v, want nil: a closed connection is not a matter of time", err)
	}
	err := Timeout(live, "iscsi: login with t:3260", fmt.Errorf("read: %w", os.ErrDeadlineExceeded))
	if !errors.Is(err, storage.ErrUnreachable) || err.Error() != "iscsi: login with t:3260: no answer in time: storage: storage unreachable" {
		t.Errorf("Timeout(deadline) = %q", err)
	}
	ctx, cancel := context.WithTimeout(live, -time.Second)
	defer cancel()
	err = Timeout(ctx, "x", io.EOF)
	if !errors.Is(err, storage.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Timeout after the context ended = %v, want ErrUnreachable and DeadlineExceeded", err)
	}
	err = Broken("nfs: NULL on s:2049", io.ErrUnexpectedEOF)
	if !errors.Is(err, storage.ErrUnreachable) || err.Error() != "nfs: NULL on s:2049: storage: storage unreachable (unexpected EOF)" {
		t.Errorf("Broken = %q", err)
	}
}
