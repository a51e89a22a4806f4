package fence

import (
	"context"
	"errors"
	"fmt"
)

// Status asks the levels that can read power (StatusReader), in order, and
// returns the first answer. A level that fails, or answers PowerUnknown, hands
// over to the next; with no answer the error joins every level's.
func (c *Chain) Status(ctx context.Context, host string) (Power, error) {
	var errs []error
	for i, l := range c.levels {
		sr, ok := l.Fencer.(StatusReader)
		if !ok {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, l.Timeout)
		p, err := sr.Status(lctx, host)
		cancel()
		if err == nil && p != PowerUnknown {
			return p, nil
		}
		if err == nil {
			err = fmt.Errorf("power unknown")
		}
		errs = append(errs, fmt.Errorf("level %d (%s): %w", i, l.Method, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return PowerUnknown, &Error{Host: host, Method: "chain", Step: "status", Err: fmt.Errorf("no level reads power: %w", ErrNotSupported)}
	}
	return PowerUnknown, &Error{Host: host, Method: "chain", Step: "status", Err: errors.Join(errs...)}
}

// Unfence lets the host back through the first level that can (Unfencer)
// and succeeds; with none, the error joins every level's.
func (c *Chain) Unfence(ctx context.Context, host string) error {
	var errs []error
	for i, l := range c.levels {
		u, ok := l.Fencer.(Unfencer)
		if !ok {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, l.Timeout)
		err := u.Unfence(lctx, host)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("level %d (%s): %w", i, l.Method, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return &Error{Host: host, Method: "chain", Step: "unfence", Err: fmt.Errorf("no level can unfence: %w", ErrNotSupported)}
	}
	return &Error{Host: host, Method: "chain", Step: "unfence", Err: errors.Join(errs...)}
}

var (
	_ StatusReader = (*Chain)(nil)
	_ Unfencer     = (*Chain)(nil)
)
