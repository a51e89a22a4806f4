// Package member holds what the examples' programs (daemon, gateway,
// witness) each do around their ha.Cluster in the same way: read the join
// token from its file, log the cluster's events, and close the member with a
// deadline on the way out.
package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/xenha/xenha/ha"
)

// ErrEmptyToken: the join token file holds only white space.
var ErrEmptyToken = errors.New("member: join token file is empty")

// ReadJoinToken reads the pool's join token from path, without the white
// space (a trailing newline) around it. An empty file is refused with
// ErrEmptyToken, naming the file.
func ReadJoinToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("join token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s: write the pool's shared secret into it", ErrEmptyToken, path)
	}
	return tok, nil
}

// LogEvents logs every event until the channel closes (when the
// subscription's context ends). Lease renewals go at debug level: there is
// one per host every KeepAlive.
func LogEvents(ctx context.Context, log *slog.Logger, events <-chan ha.Event) {
	for ev := range events {
		level := slog.LevelInfo
		if ev.Kind == ha.EventApplied {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "event", "kind", ev.Kind, "host", ev.Host, "vm", ev.VM, "msg", ev.Message)
	}
}

// closeTimeout bounds Close: a member shutting down should not hang the
// program's exit on a peer that does not answer.
const closeTimeout = 10 * time.Second

// Close closes c within closeTimeout and logs a failure. It returns the
// error so that a caller can tell a clean stop from one that was not.
func Close(c *ha.Cluster, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := c.Close(ctx)
	if err != nil {
		log.Warn("close", "member", c.ID(), "err", err)
	}
	return err
}
