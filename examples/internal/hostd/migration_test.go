package hostd

import (
	"testing"

	"github.com/xenha/xenha/xenctl"
)

// TestNoLiveMigrationHidesOnlyMigrate: on libvirt's test driver the daemon
// offers no live migration (ha then moves VMs by stop and start), and keeps
// watching, pausing and the URI.
func TestNoLiveMigrationHidesOnlyMigrate(t *testing.T) {
	var h any = noLiveMigration{}
	if _, ok := h.(xenctl.Migrator); ok {
		t.Fatal("noLiveMigration is still a xenctl.Migrator")
	}
	if _, ok := h.(xenctl.Watcher); !ok {
		t.Fatal("noLiveMigration lost xenctl.Watcher")
	}
	if _, ok := h.(xenctl.Pauser); !ok {
		t.Fatal("noLiveMigration lost xenctl.Pauser")
	}
	if _, ok := h.(interface{ URI() string }); !ok {
		t.Fatal("noLiveMigration lost URI")
	}
}
