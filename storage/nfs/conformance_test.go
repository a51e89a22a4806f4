package nfs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/nfs"
	"github.com/xenha/xenha/storage/storagetest"
)

func ganeshaVolume(g *ganesha, disk string) storage.Volume {
	return storage.Volume{ID: "vm1-disk0", Kind: nfs.Kind, Params: map[string]string{
		nfs.ParamServer: "127.0.0.1", nfs.ParamExport: g.Export, nfs.ParamPath: disk,
	}}
}

// TestConformanceNetworkDisk runs the storage.Backend suite on two simulated
// hosts sharing an image on a real nfs-ganesha. NFS cannot fence an old
// writer, so the subject promises stale-generation refusal, not Exclusive.
func TestConformanceNetworkDisk(t *testing.T) {
	g := startGanesha(t)
	g.Disk(t, "vm1.img", 8<<20)
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		vol := ganeshaVolume(g, "vm1.img")
		missing := ganeshaVolume(g, "nosuch.img")
		missing.ID = "missing"
		with := func(id, k, v string) storage.Volume { return storagetest.WithParam(vol, id, k, v) }
		return storagetest.Subject{
			A:       nfs.New("host-a"),
			B:       nfs.New("host-b"),
			Volume:  vol,
			Missing: missing,
			Invalid: []storage.Volume{
				with("no-server", nfs.ParamServer, ""),
				with("relative-export", nfs.ParamExport, "srv/vm"),
				with("escaping-path", nfs.ParamPath, "../etc/passwd"),
				with("absolute-path", nfs.ParamPath, "/vm1.img"),
				with("bad-port", nfs.ParamNFSPort, "0"),
				with("bad-options", nfs.ParamOptions, "-o remount"),
				with("a/b", nfs.ParamPath, "vm1.img"),
			},
			StaleGenerations: true,
		}
	})
	t.Run("the export root is not a disk", func(t *testing.T) {
		dir := ganeshaVolume(g, ".")
		dir.Generation = 1
		_, err := nfs.New("host-a").Attach(ctxT(t), dir)
		if !errors.Is(err, storage.ErrInvalidVolume) {
			t.Fatalf("attach of the export directory: %v, want ErrInvalidVolume", err)
		}
	})
}

// TestQEMUOpensNetworkSource proves QEMU opens the source Attach returns:
// qemu-img (libnfs, from qemu-block-extra) finds MOUNT and NFS through
// rpcbind on 111, which is why the source carries no port.
func TestQEMUOpensNetworkSource(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img") // before starting ganesha for nothing
	g := startGanesha(t)
	g.Disk(t, "vm1.img", 40<<20)
	vol := ganeshaVolume(g, "vm1.img")
	vol.Generation = 1
	b := nfs.New("host-a")
	src, err := b.Attach(ctxT(t), vol)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Detach(context.Background(), vol)
	url := fmt.Sprintf("nfs://%s%s", src.Hosts[0].Host, src.Name)
	if size := storagetest.QEMUImgSize(t, url); size != 40<<20 {
		t.Fatalf("qemu-img info %s reports %d bytes, not the image's 40 MiB", url, size)
	}
}
