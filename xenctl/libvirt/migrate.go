package libvirt

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
)

// Migrate live-migrates a running domain to the hypervisor at opts.URI. It
// first checks that the destination can run the domain's CPU; then it runs the
// migration, reporting progress about every poll interval, and aborts it if
// ctx ends, after which the domain still runs here.
func (h *Hypervisor) Migrate(ctx context.Context, name string, opts xenctl.MigrateOptions, progress func(xenctl.MigrationProgress)) error {
	what := fmt.Sprintf("migrate %q to %s", name, opts.URI)
	if opts.URI == "" {
		return fmt.Errorf("libvirt %s: migrate %q: no destination URI in MigrateOptions", h.uri, name)
	}
	var liveXML, definedXML string
	var active bool
	err := h.withDomain(ctx, "read", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		var err error
		if active, err = d.IsActive(); err != nil || !active {
			return err
		}
		if liveXML, err = d.GetXMLDesc(0); err != nil {
			return err
		}
		definedXML, err = d.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
		return err
	})
	if err != nil {
		return err
	}
	if !active {
		return fmt.Errorf("libvirt %s: %s: the domain is not running; start it on the destination instead", h.uri, what)
	}
	live, err := cpuOfDomain(liveXML)
	if err != nil {
		return fmt.Errorf("libvirt %s: %s: %w", h.uri, what, err)
	}
	defined, err := cpuOfDomain(definedXML)
	if err != nil {
		return fmt.Errorf("libvirt %s: %s: %w", h.uri, what, err)
	}
	dconn, err := h.connect(ctx, opts.URI)
	if err != nil {
		return err
	}
	defer func() { go dconn.release() }()
	// The running guest's CPU must exist there now, and the defined CPU
	// must exist there for the guest to boot there after a failover. They
	// differ when libvirt adjusted the live CPU to what this host provided.
	if err := h.checkCPU(ctx, dconn, what, "running", live); err != nil {
		return err
	}
	if defined.XML != live.XML {
		if err := h.checkCPU(ctx, dconn, what, "defined", defined); err != nil {
			return err
		}
	}
	return h.migrate(ctx, name, what, dconn, opts, progress)
}

// connect opens a connection to another host, bounded by ctx.
func (h *Hypervisor) connect(ctx context.Context, uri string) (*connRef, error) {
	ch := make(chan *libvirt.Connect, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := libvirt.NewConnect(uri)
		if err != nil {
			errc <- err
			return
		}
		_ = c.SetKeepAlive(h.keepInterval, h.keepCount)
		ch <- c
	}()
	select {
	case c := <-ch:
		return newConnRef(c), nil
	case err := <-errc:
		return nil, wrapErr(uri, "connect to migration destination", err, false)
	case <-ctx.Done():
		go func() {
			select {
			case c := <-ch:
				closeRaw(c)
			case <-errc:
			}
		}()
		return nil, unavailable(ctx, uri, "connect to migration destination")
	}
}

// bounded runs fn with its own reference to c and returns when fn does or
// ctx ends.
func bounded(ctx context.Context, c *connRef, uri, what string, fn func(c *libvirt.Connect) error) error {
	if !c.acquire() {
		return fmt.Errorf("libvirt %s: %s: %w: connection closed", uri, what, xenctl.ErrUnavailable)
	}
	ch := make(chan [2]any, 1)
	go func() {
		defer c.release()
		err := fn(c.c)
		alive := true
		if err != nil {
			alive, _ = c.c.IsAlive()
		}
		ch <- [2]any{err, alive}
	}()
	select {
	case r := <-ch:
		err, _ := r[0].(error)
		return wrapErr(uri, what, err, r[1].(bool))
	case <-ctx.Done():
		return unavailable(ctx, uri, what)
	}
}

// checkCPU asks the destination whether it can provide the domain's CPU.
func (h *Hypervisor) checkCPU(ctx context.Context, dconn *connRef, what, which string, cpu guestCPU) error {
	if cpu.XML == "" {
		return nil
	}
	supported := true
	err := bounded(ctx, dconn, h.uri, what+": compare CPU", func(c *libvirt.Connect) error {
		_, err := c.CompareHypervisorCPU(cpu.Emulator, cpu.Arch, cpu.Machine, cpu.VirtType, cpu.XML,
			libvirt.CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
		if isCode(err, libvirt.ERR_NO_SUPPORT) {
			// Older drivers compare against the host CPU only.
			_, err = c.CompareCPU(cpu.XML, libvirt.CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
		}
		if isCode(err, libvirt.ERR_NO_SUPPORT) {
			supported = false
			return nil
		}
		return err
	})
	if err == nil && !supported {
		h.log.Warn("destination cannot compare CPUs; migrating unchecked", "uri", h.uri, "call", what)
	}
	if e, ok := lvError(err); ok && e.Code == libvirt.ERR_CPU_INCOMPATIBLE {
		return fmt.Errorf("libvirt %s: %s: %w: %s; the domain's %s CPU is %s. Pick a destination with these features or lower the domain's CPU model (%w)",
			h.uri, what, xenctl.ErrCPUIncompatible, e.Message, which, cpu.XML, e)
	}
	return err
}

// listenHost returns the IP address in a migrate URI such as
// "tcp://198.18.0.2:49152", for the destination to listen on; empty for a
// host name or an unparsable URI.
func listenHost(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return ip.String()
	}
	return ""
}

// migrationParams builds libvirt's flags and typed parameters from opts.
// libxl (driver "Xen") accepts fewer: no abort-on-error or unsafe flag (it has
// no disk-cache check to skip), and no bandwidth or listen-address parameter.
func migrationParams(opts xenctl.MigrateOptions, driver string) (*libvirt.DomainMigrateParameters, libvirt.DomainMigrateFlags, error) {
	xen := driver == "Xen"
	flags := libvirt.MIGRATE_LIVE
	if !xen {
		flags |= libvirt.MIGRATE_ABORT_ON_ERROR
	}
	if opts.Persist {
		flags |= libvirt.MIGRATE_PERSIST_DEST | libvirt.MIGRATE_UNDEFINE_SOURCE
	}
	if opts.Unsafe && !xen {
		flags |= libvirt.MIGRATE_UNSAFE
	}
	p := &libvirt.DomainMigrateParameters{}
	if opts.Address != "" {
		p.URISet, p.URI = true, opts.Address
		if ip := listenHost(opts.Address); ip != "" && !xen {
			p.ListenAddressSet, p.ListenAddress = true, ip
		}
	}
	if opts.BandwidthMiBs > 0 {
		if xen {
			return nil, 0, fmt.Errorf("%w: libxl cannot limit migration bandwidth; set BandwidthMiBs to 0", xenctl.ErrNotSupported)
		}
		p.BandwidthSet, p.Bandwidth = true, opts.BandwidthMiBs
	}
	return p, flags, nil
}

type jobPoll struct {
	info        *libvirt.DomainJobInfo
	err         error
	downtimeSet bool
}

// migrate runs virDomainMigrate3 on its own goroutine and watches it.
func (h *Hypervisor) migrate(ctx context.Context, name, what string, dconn *connRef, opts xenctl.MigrateOptions, progress func(xenctl.MigrationProgress)) error {
	params, flags, err := migrationParams(opts, h.Driver())
	if err != nil {
		return fmt.Errorf("libvirt %s: %s: %w", h.uri, what, err)
	}
	c, gen, err := h.acquire(what)
	if err != nil {
		return err
	}
	if !dconn.acquire() {
		c.release()
		return fmt.Errorf("libvirt %s: %s: %w: destination connection closed", h.uri, what, xenctl.ErrUnavailable)
	}

	var mu sync.Mutex
	cancelled, started := false, false
	domc := make(chan *libvirt.Domain, 1)
	done := make(chan outcome, 1)
	go func() {
		defer c.release()
		defer dconn.release()
		d, err := c.c.LookupDomainByName(name)
		if err != nil {
			done <- outcome{err, true}
			return
		}
		defer d.Free()
		mu.Lock()
		if cancelled {
			mu.Unlock()
			done <- outcome{nil, true}
			return
		}
		started = true
		mu.Unlock()
		if err := d.Ref(); err == nil {
			domc <- d // the watcher's own reference, for polling and aborting
		} else {
			domc <- nil
		}
		nd, err := d.Migrate3(dconn.c, params, flags)
		if nd != nil {
			_ = nd.Free()
		}
		alive := true
		if err != nil {
			alive, _ = c.c.IsAlive()
		}
		done <- outcome{err, alive}
	}()

	var d *libvirt.Domain
	gotDom := false
	defer func() {
		if d != nil {
			_ = d.Free()
		}
	}()
	begin := time.Now()
	var last xenctl.MigrationProgress
	downtimeSet := opts.MaxDowntime <= 0
	polls := make(chan jobPoll, 1)
	polling := false
	tick := time.NewTicker(h.pollEvery)
	defer tick.Stop()
	for {
		select {
		case d = <-domc:
			gotDom = true
		case r := <-done:
			if r.err != nil {
				if !r.alive {
					h.connectionLost(gen)
				}
				return wrapErr(h.uri, what, r.err, r.alive)
			}
			if progress != nil {
				last.DataProcessed, last.DataRemaining = max(last.DataProcessed, last.DataTotal), 0
				last.Elapsed = time.Since(begin)
				progress(last)
			}
			return nil
		case <-tick.C:
			if d == nil || polling {
				continue
			}
			// The poll takes its own reference: the watcher does not wait
			// for polls before it frees its own.
			if d.Ref() != nil {
				continue
			}
			polling = true
			go func(d *libvirt.Domain, setDowntime bool) {
				defer d.Free()
				info, err := d.GetJobStats(0)
				p := jobPoll{info: info, err: err}
				if err == nil && setDowntime && info.Type != libvirt.DOMAIN_JOB_NONE {
					p.downtimeSet = d.MigrateSetMaxDowntime(uint64(opts.MaxDowntime.Milliseconds()), 0) == nil
				}
				polls <- p
			}(d, !downtimeSet)
		case p := <-polls:
			polling = false
			downtimeSet = downtimeSet || p.downtimeSet
			if p.err != nil || p.info == nil || p.info.Type == libvirt.DOMAIN_JOB_NONE {
				continue
			}
			last = xenctl.MigrationProgress{
				DataTotal: p.info.DataTotal, DataProcessed: p.info.DataProcessed,
				DataRemaining: p.info.DataRemaining, Elapsed: time.Since(begin),
			}
			if progress != nil {
				progress(last)
			}
		case <-ctx.Done():
			if !gotDom {
				mu.Lock()
				st := started
				cancelled = true
				mu.Unlock()
				if !st {
					return unavailable(ctx, h.uri, what+" (cancelled before it began; the domain still runs here)")
				}
				d = <-domc
			}
			return h.abortMigration(ctx, what, d, done)
		}
	}
}

type outcome struct {
	err   error
	alive bool
}

// abortMigration cancels a running migration whose context ended. AbortJob is
// retried until virDomainMigrate3 returns, because libvirt refuses it in the
// moment before the job exists.
func (h *Hypervisor) abortMigration(ctx context.Context, what string, d *libvirt.Domain, done <-chan outcome) error {
	giveUp := time.NewTimer(30 * time.Second)
	defer giveUp.Stop()
	retry := time.NewTicker(h.pollEvery)
	defer retry.Stop()
	for {
		if d != nil && d.Ref() == nil {
			go func() {
				_ = d.AbortJob()
				_ = d.Free()
			}()
		}
		select {
		case r := <-done:
			if r.err == nil {
				// The migration finished before the abort took: the domain
				// runs on the destination, which is what Migrate promises.
				return nil
			}
			return unavailable(ctx, h.uri, what+" (aborted; the domain still runs here)")
		case <-giveUp.C:
			return unavailable(ctx, h.uri, what+" (abort not confirmed within 30 s; where the domain runs is unknown, check both hosts)")
		case <-retry.C:
		}
	}
}
