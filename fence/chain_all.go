package fence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// All fences a host through several devices at once and proves it off only
// when every one of them does: a host with two power supplies on two PDUs,
// or two BMC-controlled power feeds. Use it as one Level of a Chain. The
// fencers run in parallel; if any fails, All fails with every error joined,
// and the host may still be on (one feed still powered).
func All(method string, fencers ...Fencer) Fencer {
	return &all{method: method, fencers: fencers}
}

type all struct {
	method  string
	fencers []Fencer
}

func (a *all) Fence(ctx context.Context, host string) (Proof, error) {
	if len(a.fencers) == 0 {
		return Proof{}, &Error{Host: host, Method: a.method, Step: "all", Err: errors.New("no fencers to combine")}
	}
	proofs := make([]Proof, len(a.fencers))
	errs := make([]error, len(a.fencers))
	var wg sync.WaitGroup
	for i, f := range a.fencers {
		wg.Go(func() { proofs[i], errs[i] = f.Fence(ctx, host) })
	}
	wg.Wait()
	var failed []error
	var ev []string
	var latest time.Time
	kind := ProofVerifiedOff
	for i, p := range proofs {
		switch {
		case errs[i] != nil:
			failed = append(failed, fmt.Errorf("device %d: %w", i, errs[i]))
		case p.Host != host:
			failed = append(failed, fmt.Errorf("device %d: proof for %q, not %q: %w", i, p.Host, host, ErrNotOff))
		default:
			ev = append(ev, fmt.Sprintf("[%d] %s: %s", i, p.Method, p.Evidence))
			if p.Time.After(latest) {
				latest = p.Time
			}
			kind = min(kind, p.Kind) // as strong as the weakest feed's proof
		}
	}
	if len(failed) > 0 {
		return Proof{}, &Error{Host: host, Method: a.method, Step: "all",
			Err: fmt.Errorf("%d of %d devices did not fence the host, it may still have power: %w", len(failed), len(a.fencers), errors.Join(failed...))}
	}
	// The host is off from the moment the last device cut its feed.
	return Proof{Host: host, Method: a.method, Evidence: strings.Join(ev, "; "), Time: latest, Kind: kind}, nil
}
