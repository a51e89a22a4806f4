package nbd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
)

// ErrNoKernelSupport: host mode needs the nbd kernel module, which is not
// loaded on this host.
var ErrNoKernelSupport = errors.New("nbd: kernel nbd support missing; run 'modprobe nbd' or use network-disk mode")

const nbdClient = "nbd-client"

// nbd-client -c exits 0 and prints the owner's PID when the device is
// connected, 1 when it is not (or does not exist), 2 on error.
func (b *Backend) connected(ctx context.Context, vol storage.Volume, device string) (pid string, ok bool, err error) {
	res, err := b.runner.Run(ctx, run.Command(nbdClient, "-c", device))
	var xe *run.ExitError
	switch {
	case err == nil:
		return strings.TrimSpace(string(res.Stdout)), true, nil
	case errors.As(err, &xe) && xe.ExitCode == 1:
		return "", false, nil
	default:
		return "", false, b.fail(vol, "check", fmt.Errorf("checking %s: %w", device, err))
	}
}

func (b *Backend) connect(ctx context.Context, vol storage.Volume, p params, readOnly bool) error {
	pid, busy, err := b.connected(ctx, vol, p.device)
	if err != nil {
		return err
	}
	if busy {
		return b.fail(vol, "connect", fmt.Errorf("%s is already connected (nbd-client pid %s); disconnect it ('nbd-client -d %s') or give the volume another device: %w",
			p.device, pid, p.device, storage.ErrInUse))
	}
	args := []string{p.server, strconv.Itoa(p.port), p.device, "-N", p.export}
	if readOnly {
		args = append(args, "-readonly")
	}
	res, err := b.runner.Run(ctx, run.Command(nbdClient, args...))
	if err != nil {
		return b.fail(vol, "connect", classify(string(res.Stdout)+string(res.Stderr), err))
	}
	return nil
}

func (b *Backend) disconnect(ctx context.Context, vol storage.Volume, p params) error {
	_, busy, err := b.connected(ctx, vol, p.device)
	if err != nil || !busy {
		return err
	}
	res, err := b.runner.Run(ctx, run.Command(nbdClient, "-d", p.device))
	if err != nil {
		return b.fail(vol, "disconnect", classify(string(res.Stdout)+string(res.Stderr), err))
	}
	return nil
}

// classify maps nbd-client's messages to the errors callers branch on.
func classify(out string, err error) error {
	switch {
	case strings.Contains(out, "Export unknown") || strings.Contains(out, "export unknown"):
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case strings.Contains(out, "Socket failed") || strings.Contains(out, "Connection refused") ||
		strings.Contains(out, "timed out") || strings.Contains(out, "No route to host"):
		return fmt.Errorf("%w: %w", storage.ErrUnreachable, err)
	case strings.Contains(out, "netlink family") || strings.Contains(out, "Cannot open NBD") ||
		strings.Contains(out, "module is loaded"):
		return fmt.Errorf("%w: %w", ErrNoKernelSupport, err)
	}
	return err
}
