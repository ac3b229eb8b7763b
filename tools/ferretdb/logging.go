package main

import (
	"context"
	"log/slog"
)

// lazyAttrs keeps a logger's attributes unformatted until a record is actually written.
//
// FerretDB v1's SQL layer (internal/util/fsql) calls Logger.With twice per statement, with the
// statement's arguments: for an insert or update, the whole document as JSON. slog's built-in
// handlers format With's attributes at once (strconv.Quote over every byte), even when the
// record that follows is a Debug one they drop: profiled under the media benchmark, that was a
// third of the server's CPU (`FERRETDB_PPROF_ADDR`, docs/BENCHMARKS.md). Here With only
// remembers the attributes, and the inner handler formats them for a record it keeps.
type lazyAttrs struct {
	inner slog.Handler
	attrs []slog.Attr
}

func (h *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) == 0 {
		return h.inner.Handle(ctx, r)
	}
	return h.inner.WithAttrs(h.attrs).Handle(ctx, r)
}

func (h *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(h.attrs)+len(attrs))
	return &lazyAttrs{inner: h.inner, attrs: append(append(kept, h.attrs...), attrs...)}
}

// WithGroup is rare (not on the per-statement path): the attributes so far are applied first,
// so they stay outside the group, as slog's own handlers place them.
func (h *lazyAttrs) WithGroup(name string) slog.Handler {
	inner := h.inner
	if len(h.attrs) > 0 {
		inner = inner.WithAttrs(h.attrs)
	}
	return &lazyAttrs{inner: inner.WithGroup(name)}
}
