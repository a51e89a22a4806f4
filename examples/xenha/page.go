package main

import (
	_ "embed"
	"net/http"
)

// statusHTML is the status page: one file, no external resources, that
// reads the API it is served with and follows the event stream.
//
//go:embed status.html
var statusHTML []byte

func statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(statusHTML)
}
