package nbd

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
)

func TestConformanceNetworkMode(t *testing.T) {
	s := startQemuNBD(t, nbdExport{name: "vm1-disk0", size: 1 << 20})
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		vol := storage.Volume{ID: "vm1-disk0", Kind: Kind, Params: s.params("vm1-disk0")}
		missing := storage.Volume{ID: "vm9-disk0", Kind: Kind, Params: s.params("vm9-disk0")}
		withParam := func(k, v string) storage.Volume { return storagetest.WithParam(vol, vol.ID, k, v) }
		return storagetest.Subject{
			A:       New(WithHostName("dom0-a")),
			B:       New(WithHostName("dom0-b")),
			Volume:  vol,
			Missing: missing,
			Invalid: []storage.Volume{
				withParam("server", ""), withParam("export", ""), withParam("port", "0"),
				withParam("port", "nbd"), withParam("readonly", "perhaps"),
				{ID: "", Kind: Kind, Params: s.params("vm1-disk0")},
				{ID: "vm1-disk0", Kind: "iscsi", Params: s.params("vm1-disk0")},
			},
			StaleGenerations: true,
		}
	})
}

func TestUnreachableVolume(t *testing.T) {
	b := New(WithHostName("dom0-a"))
	vol := storage.Volume{ID: "v", Kind: Kind, Params: map[string]string{"server": "127.0.0.1", "port": strconv.Itoa(testenv.ClosedPort(t)), "export": "x"}}
	err := b.Health(context.Background(), vol)
	var se *storage.Error
	if !errors.Is(err, storage.ErrUnreachable) || !errors.As(err, &se) || se.Host != "dom0-a" {
		t.Fatalf("Health: %v, want ErrUnreachable naming dom0-a", err)
	}
	if _, err := b.Attach(context.Background(), vol); !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("Attach: %v, want ErrUnreachable", err)
	}
}

// TestQEMUOpensNetworkSource proves the Source that Attach returns is one QEMU
// opens: qemu-img reads the export through the URI and through the json:
// form libvirt would build from the same fields.
func TestQEMUOpensNetworkSource(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img") // before starting qemu-nbd for nothing
	for _, ro := range []bool{false, true} {
		s := startQemuNBD(t, nbdExport{name: "vm1-disk0", size: 5 << 20, readOnly: ro})
		src, err := New().Attach(context.Background(), storage.Volume{ID: "vm1-disk0", Kind: Kind, Params: s.params("vm1-disk0"), Generation: 1})
		if err != nil {
			t.Fatal(err)
		}
		if src.ReadOnly != ro {
			t.Errorf("source %+v: ReadOnly %v, the export's read-only flag is %v", src, src.ReadOnly, ro)
		}
		uri, err := URI(src)
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := json.Marshal(map[string]any{"driver": "nbd", "export": src.Name,
			"server": map[string]string{"type": "inet", "host": src.Hosts[0].Host, "port": strconv.Itoa(src.Hosts[0].Port)}})
		for _, target := range []string{uri, "json:" + string(spec)} {
			if size := storagetest.QEMUImgSize(t, target); size != 5<<20 {
				t.Fatalf("qemu-img info %s: virtual-size %d, want %d", target, size, 5<<20)
			}
		}
	}
}

func TestURI(t *testing.T) {
	for _, c := range []struct {
		src  storage.Source
		want string
	}{
		{storage.Source{Type: storage.SourceNetwork, Protocol: "nbd", Name: "disk0", Hosts: []storage.HostPort{{Host: "198.18.0.5", Port: 10809}}}, "nbd://198.18.0.5:10809/disk0"},
		{storage.Source{Type: storage.SourceNetwork, Protocol: "nbd", Name: "a b", Hosts: []storage.HostPort{{Host: "::1"}}}, "nbd://[::1]:10809/a%20b"},
	} {
		got, err := URI(c.src)
		if err != nil || got != c.want {
			t.Errorf("URI(%+v) = %q, %v; want %q", c.src, got, err, c.want)
		}
	}
	if _, err := URI(storage.Source{Type: storage.SourceBlock, Path: "/dev/nbd0"}); !errors.Is(err, storage.ErrInvalidVolume) {
		t.Errorf("URI(block) err = %v", err)
	}
}
