// Package wire bounds the short TCP conversations of the pure-Go probes
// (iSCSI, ONC RPC for NFS) by a context, and says how one failed in the
// terms callers branch on.
//
// A probe's context bounds the whole conversation, not only the connect:
// a server that accepts and then stalls (a hung nfsd, a wedged target) is
// as unreachable as one that never answers. Bind gives the connection the
// context's deadline and expires it at once when the context ends early,
// so a blocked read or write returns instead of waiting for a kernel
// timeout. Every way of running out of time, and every broken connection,
// then wraps storage.ErrUnreachable; what the server said wrong (a
// malformed reply) is the caller's to tell apart, before it asks Broken.
package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/xenha/xenha/storage"
)

// Bind makes ctx bound every read and write on nc until release: nc takes
// ctx's deadline (none if ctx has none), and a ctx that ends sooner, by
// cancellation, expires nc at once. release stops following ctx and clears
// the deadline, so nc can serve a later exchange under another context.
func Bind(ctx context.Context, nc net.Conn) (release func()) {
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	// A time long past, not time.Now(): the clock may step.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		_ = nc.SetDeadline(time.Time{})
	}
}

// Dial connects to addr over TCP, or with dial if it is not nil, and binds
// the connection to ctx (see Bind). A failure wraps storage.ErrUnreachable
// (and ctx's error, if ctx ended): what names the attempt ("nfs: connect to
// 10.0.0.5:111"), and hint, appended to other failures, tells the operator
// what to check.
func Dial(ctx context.Context, addr string, dial func(context.Context, string) (net.Conn, error), what, hint string) (nc net.Conn, release func(), err error) {
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	nc, err = dial(ctx, addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%s: %w: %w", what, storage.ErrUnreachable, ctx.Err())
		}
		return nil, nil, fmt.Errorf("%s: %w (%v); %s", what, storage.ErrUnreachable, err, hint)
	}
	return nc, Bind(ctx, nc), nil
}

// Timeout is the error for an exchange on a bound connection that ran out
// of time: ctx ended, or the deadline Bind set passed (which can show
// before ctx reports it). It wraps storage.ErrUnreachable, and ctx's error
// if there is one; what names the exchange and the server ("iscsi: login
// with 10.0.0.5:3260"). It is nil if err is not a matter of time.
func Timeout(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: no answer in time: %w: %w", what, storage.ErrUnreachable, ctx.Err())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: no answer in time: %w", what, storage.ErrUnreachable)
	}
	return nil
}

// Broken is the error for an exchange that failed for a reason neither
// Timeout nor the protocol explains (a reset, a refused write): the server
// is unreachable, and err says how.
func Broken(what string, err error) error {
	return fmt.Errorf("%s: %w (%v)", what, storage.ErrUnreachable, err)
}
