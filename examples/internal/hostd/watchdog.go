package hostd

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/xenctl"
)

// openWatchdog opens and arms the host's watchdog device. The daemon does
// it as it starts, before it holds a lease: a daemon restarted after a
// crash may find the pool's VMs still running here, and the device must
// reset the host unless the new member gets its lease back (and ha feeds
// the keeper) within the timeout.
func openWatchdog(w *Watchdog, log *slog.Logger) (*watchdog.Keeper, error) {
	opts := []watchdog.KeeperOption{watchdog.WithTimeout(w.timeout()), watchdog.WithLogger(log)}
	if w.PetInterval > 0 {
		opts = append(opts, watchdog.WithPetInterval(time.Duration(w.PetInterval)))
	}
	return watchdog.Open(w.Device, opts...)
}

// pet runs the keeper's keep-alive loop until the returned function is
// called. The loop pets only while ha has fed it a valid lease.
func pet(k *watchdog.Keeper, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := k.Run(ctx)
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, watchdog.ErrClosed) {
			log.Error("watchdog keep-alives stopped: the device will reset this host", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// poolVMs returns the names and UUIDs of the pool's VMs as this member
// last saw them, read before it closes.
func poolVMs(c *ha.Cluster) map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.State(ctx, ha.Stale)
	if err != nil {
		return nil
	}
	vms := map[string]bool{}
	for name, vm := range st.VMs {
		vms[name] = true
		if vm.UUID != "" {
			vms[vm.UUID] = true
		}
	}
	return vms
}

// settleWatchdog decides, as the daemon exits, whether to disarm the
// device. Disarming is right only when the daemon was asked to stop, the
// member closed cleanly, and the hypervisor runs none of the pool's VMs:
// the leader will count this host's silence as a reset after lease +
// watchdog timeout, and a VM still running here then would run twice.
// Otherwise the device stays armed and resets the host unless a new daemon
// takes the lease back in time.
func settleWatchdog(k *watchdog.Keeper, clean bool, vms map[string]bool, h xenctl.Hypervisor, log *slog.Logger) {
	armed := func(why string, args ...any) {
		log.Warn("watchdog left armed: it resets this host unless a daemon takes the lease back in time",
			append([]any{"why", why, "timeout", k.Timeout()}, args...)...)
	}
	if !clean {
		armed("the daemon did not stop cleanly")
		return
	}
	if vms == nil || h == nil {
		armed("the pool's VMs or this host's domains could not be read")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	doms, err := h.Domains(ctx)
	if err != nil {
		armed("the hypervisor did not list its domains", "err", err)
		return
	}
	for _, d := range doms {
		if d.State.Active() && (vms[d.Name] || vms[d.UUID]) {
			armed("a pool VM still runs here", "vm", d.Name, "state", d.State)
			return
		}
	}
	if err := k.Close(); err != nil {
		log.Error("watchdog disarm", "err", err)
		return
	}
	log.Info("watchdog disarmed")
}
