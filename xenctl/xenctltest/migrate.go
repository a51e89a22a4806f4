package xenctltest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// Migrate moves a running domain to another host of the same world, named by
// opts.URI (Host.URI, or the bare host name). The switch-over is atomic: no
// observer ever sees the domain active on both hosts. A Fault with a Delay on
// MethodMigrate stands for the time the memory copy takes; ending ctx during it
// cancels the migration and the domain keeps running here.
//
// With opts.Persist the domain is defined on the destination and undefined
// here; without it, it runs transient there and its definition (if any) stays
// here, shut off with reason "migrated", as libvirt does.
func (h *Host) Migrate(ctx context.Context, name string, opts xenctl.MigrateOptions, progress func(xenctl.MigrationProgress)) error {
	c, err := h.begin(ctx, MethodMigrate, name)
	if err != nil {
		return c.end(err)
	}
	started := time.Now()
	total, err := h.checkMigration(name, opts)
	h.world.mu.Unlock()
	if err != nil {
		return c.end(err)
	}
	if progress != nil {
		progress(xenctl.MigrationProgress{DataTotal: total, DataRemaining: total, Elapsed: time.Since(started)})
	}
	if ctx.Err() != nil {
		return c.end(unavailable(ctx, "migrate %q from host %s: cancelled; it still runs here", name, h.name))
	}

	h.world.mu.Lock()
	// Check again: the world may have changed while the caller saw progress.
	if _, err := h.checkMigration(name, opts); err != nil {
		h.world.mu.Unlock()
		return c.end(err)
	}
	dst := h.world.hosts[hostFromURI(opts.URI)]
	src := h.doms[name]
	moved := &domain{
		spec:       src.spec,
		persistent: opts.Persist,
		guest:      src.guest,
	}
	if old, ok := dst.doms[name]; ok && old.persistent {
		moved.persistent = true
	}
	dst.doms[name] = moved
	dst.run(moved, "migrated")
	if src.state == xenctl.StatePaused {
		moved.state = xenctl.StatePaused // libvirt keeps a paused domain paused
	}
	if opts.Persist {
		dst.emit(xenctl.EventDefined, moved)
	}
	dst.emit(xenctl.EventStarted, moved)

	h.stop(src, xenctl.StateShutoff, "migrated")
	h.emit(xenctl.EventStopped, src)
	if opts.Persist && src.persistent {
		src.persistent = false
		delete(h.doms, name)
		h.emit(xenctl.EventUndefined, src)
	}
	h.world.mu.Unlock()

	if progress != nil {
		progress(xenctl.MigrationProgress{DataTotal: total, DataProcessed: total, Elapsed: time.Since(started)})
	}
	return c.end(nil)
}

// hostFromURI accepts "xenctltest://name", "xenctltest://name/" and "name".
func hostFromURI(uri string) string {
	s := strings.TrimPrefix(uri, "xenctltest://")
	return strings.TrimSuffix(s, "/")
}

// checkMigration says whether name can migrate now, and how many bytes it
// would copy. Call with the world locked.
func (h *Host) checkMigration(name string, opts xenctl.MigrateOptions) (uint64, error) {
	d, err := h.lookup(name)
	if err != nil {
		return 0, err
	}
	if !d.state.Active() {
		return 0, fmt.Errorf("migrate %q from host %s: domain is %s, not running; start it instead", name, h.name, d.state)
	}
	dname := hostFromURI(opts.URI)
	dst := h.world.hosts[dname]
	switch {
	case dst == nil:
		return 0, fmt.Errorf("migrate %q from host %s: %w: no host %q in this world (URI %q)", name, h.name, xenctl.ErrUnavailable, dname, opts.URI)
	case dst == h:
		return 0, fmt.Errorf("migrate %q: destination %s is the source host", name, h.name)
	case dst.down || dst.closed:
		return 0, fmt.Errorf("migrate %q from host %s: %w: destination %s does not answer", name, h.name, xenctl.ErrUnavailable, dname)
	}
	if o, ok := dst.doms[name]; ok && (o.spec.UUID != d.spec.UUID || o.state.Active()) {
		return 0, fmt.Errorf("migrate %q from host %s: %w: destination %s has domain %q (UUID %s, %s)",
			name, h.name, xenctl.ErrConflict, dname, name, o.spec.UUID, o.state)
	}
	for _, o := range dst.doms {
		if o.spec.UUID == d.spec.UUID && o.spec.Name != name {
			return 0, fmt.Errorf("migrate %q from host %s: %w: destination %s holds UUID %s as %q",
				name, h.name, xenctl.ErrConflict, dname, d.spec.UUID, o.spec.Name)
		}
	}
	if m := d.spec.CPUModel; m != "" && !strings.EqualFold(m, dst.info.CPUModel) {
		return 0, fmt.Errorf("migrate %q from host %s: %w: domain wants CPU model %s, destination %s has %s",
			name, h.name, xenctl.ErrCPUIncompatible, m, dname, dst.info.CPUModel)
	}
	if dst.featuresSet {
		var missing []string
		for _, f := range d.spec.CPUFeatures {
			if !slices.Contains(dst.features, f) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return 0, fmt.Errorf("migrate %q from host %s: %w: destination %s lacks CPU features %s",
				name, h.name, xenctl.ErrCPUIncompatible, dname, strings.Join(missing, ", "))
		}
	}
	if free := dst.freeKiB(); d.spec.MemoryKiB > free {
		return 0, fmt.Errorf("migrate %q from host %s: %w: destination %s has %d KiB free, domain needs %d KiB",
			name, h.name, ErrNoMemory, dname, free, d.spec.MemoryKiB)
	}
	return d.spec.MemoryKiB * 1024, nil
}
