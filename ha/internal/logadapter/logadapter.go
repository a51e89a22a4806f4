// Package logadapter lets hashicorp/raft, which logs through hclog, write to
// the embedder's *slog.Logger, so a member has one log with one set of
// levels and handlers.
package logadapter

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Hclog returns an hclog.Logger that writes to l. Raft's Trace goes to
// slog's Debug-4; its levels otherwise map one to one.
func Hclog(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &adapter{l: l, name: name}
}

// LevelTrace is the slog level hclog's Trace maps to.
const LevelTrace = slog.LevelDebug - 4

type adapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *adapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := toSlog(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	if a.name != "" {
		args = append([]any{"logger", a.name}, args...)
	}
	a.l.Log(ctx, lv, msg, append(args, a.implied...)...)
}

func (a *adapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *adapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *adapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *adapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *adapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *adapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }
func (a *adapter) IsTrace() bool             { return a.enabled(LevelTrace) }
func (a *adapter) IsDebug() bool             { return a.enabled(slog.LevelDebug) }
func (a *adapter) IsInfo() bool              { return a.enabled(slog.LevelInfo) }
func (a *adapter) IsWarn() bool              { return a.enabled(slog.LevelWarn) }
func (a *adapter) IsError() bool             { return a.enabled(slog.LevelError) }

func (a *adapter) ImpliedArgs() []any { return a.implied }

func (a *adapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any{}, a.implied...), args...)
	return &b
}

func (a *adapter) Name() string { return a.name }

func (a *adapter) Named(name string) hclog.Logger {
	b := *a
	if b.name != "" {
		b.name += "." + name
	} else {
		b.name = name
	}
	return &b
}

func (a *adapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

// SetLevel is ignored: the slog handler decides what is logged.
func (a *adapter) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the slog handler accepts.
func (a *adapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(toSlog(l)) {
			return l
		}
	}
	return hclog.Off
}

func (a *adapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *adapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writer{a}
}

// writer turns lines of a standard logger into Info records, picking up a
// "[LEVEL]" prefix when there is one.
type writer struct{ a *adapter }

func (w writer) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(bytes.TrimSpace(p))) {
		line = strings.TrimSpace(line)
		level := hclog.Info
		for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
			tag := "[" + strings.ToUpper(l.String()) + "]"
			if rest, ok := strings.CutPrefix(line, tag); ok {
				level, line = l, strings.TrimSpace(rest)
				break
			}
		}
		w.a.Log(level, line)
	}
	return len(p), nil
}
