package libvirt

import (
	"context"
	"errors"
	"fmt"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
)

// connectionLost is the set of libvirt error codes that mean the daemon did
// not answer, as opposed to answering with a refusal.
func connectionLost(code libvirt.ErrorNumber) bool {
	switch code {
	case libvirt.ERR_NO_CONNECT, libvirt.ERR_INVALID_CONN, libvirt.ERR_SYSTEM_ERROR,
		libvirt.ERR_RPC, libvirt.ERR_OPERATION_TIMEOUT, libvirt.ERR_AUTH_UNAVAILABLE:
		return true
	}
	return false
}

// sentinelFor maps a libvirt error to the xenctl sentinel a caller branches
// on, or nil. alive says whether the connection still answered afterwards:
// libvirt reports some broken connections as internal errors.
func sentinelFor(code libvirt.ErrorNumber, alive bool) error {
	switch {
	case connectionLost(code), !alive:
		return xenctl.ErrUnavailable
	case code == libvirt.ERR_NO_DOMAIN:
		return xenctl.ErrNoDomain
	case code == libvirt.ERR_XML_ERROR, code == libvirt.ERR_XML_DETAIL, code == libvirt.ERR_XML_INVALID_SCHEMA:
		return xenctl.ErrInvalidDomain
	case code == libvirt.ERR_NO_SUPPORT, code == libvirt.ERR_ARGUMENT_UNSUPPORTED, code == libvirt.ERR_OPERATION_UNSUPPORTED:
		return xenctl.ErrNotSupported
	case code == libvirt.ERR_CPU_INCOMPATIBLE:
		return xenctl.ErrCPUIncompatible
	case code == libvirt.ERR_DOM_EXIST:
		return xenctl.ErrConflict
	}
	return nil
}

// lvError returns err as a libvirt error, if it is one.
func lvError(err error) (libvirt.Error, bool) {
	var e libvirt.Error
	if errors.As(err, &e) {
		return e, true
	}
	return e, false
}

// isCode reports whether err is a libvirt error with that code.
func isCode(err error, code libvirt.ErrorNumber) bool {
	e, ok := lvError(err)
	return ok && e.Code == code
}

// wrapErr turns the error of a libvirt call into an xenctl error that names
// the operation and the host, wraps the sentinel callers branch on, and keeps
// libvirt's own message (and error, for errors.As).
func wrapErr(host, what string, err error, alive bool) error {
	if err == nil {
		return nil
	}
	e, ok := lvError(err)
	if !ok {
		return fmt.Errorf("libvirt %s: %s: %w", host, what, err)
	}
	s := sentinelFor(e.Code, alive)
	hint := ""
	if errors.Is(s, xenctl.ErrUnavailable) {
		hint = "; is libvirtd running? xenha reconnects by itself"
	}
	if s == nil {
		return fmt.Errorf("libvirt %s: %s: %s: %w", host, what, e.Message, e)
	}
	return fmt.Errorf("libvirt %s: %s: %w: %s%s (%w)", host, what, s, e.Message, hint, e)
}

// unavailable is the error of a call whose context ended first. It wraps the
// context's cause too, so callers can tell a deadline from a cancellation.
func unavailable(ctx context.Context, host, what string) error {
	return fmt.Errorf("libvirt %s: %s: %w: no answer before the context ended; the domain's state is unknown, not stopped (%w)",
		host, what, xenctl.ErrUnavailable, context.Cause(ctx))
}

func errorsIsNoDomain(err error) bool { return errors.Is(err, xenctl.ErrNoDomain) }
