package storagetest_test

import (
	"path/filepath"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage/storagetest"
)

func TestQEMUImgSizeOfRawImage(t *testing.T) {
	img := testenv.SparseFile(t, filepath.Join(t.TempDir(), "vm1.img"), 3<<20)
	if got := storagetest.QEMUImgSize(t, img); got != 3<<20 {
		t.Fatalf("QEMUImgSize(%s) = %d, want %d", img, got, 3<<20)
	}
}
