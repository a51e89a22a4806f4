package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/xenha/xenha/ha"
)

// FuzzAPIBody: a write's body either decodes strictly into the request
// type, or is answered 400 with a JSON error naming what is wrong; never a
// panic, never a half-decoded value passed on.
func FuzzAPIBody(f *testing.F) {
	f.Add([]byte(`{"on": true}`))
	f.Add([]byte(`{"host": "h2"}`))
	f.Add([]byte(`{"name": "web1", "spec": {"memory_kib": 1}, "policy": {"restart": "restart"}}`))
	f.Add([]byte(`{"on": "yes"}`))
	f.Add([]byte(`{"name": "web1", "sneaky": 1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, target := range []any{&MaintenanceRequest{}, &MigrateRequest{}, &ha.VM{}, &ha.Volume{}} {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			ok := decode(w, r, target)
			if ok {
				if w.Code != http.StatusOK || w.Body.Len() != 0 {
					t.Fatalf("decoded, but answered %d %q", w.Code, w.Body)
				}
				continue
			}
			var e APIError
			if w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code != "bad_request" || e.Error == "" {
				t.Fatalf("refused %q with %d %q", body, w.Code, w.Body)
			}
		}
	})
}
