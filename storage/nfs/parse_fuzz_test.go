package nfs

import (
	"strings"
	"testing"
)

// FuzzParseMounts: any text either fails or yields entries whose names came
// out of the octal escapes without panicking.
func FuzzParseMounts(f *testing.F) {
	f.Add("198.18.0.11:/srv/other /mnt/with\\040space nfs rw,vers=3 0 0\n")
	f.Add("proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n")
	f.Add("a b c d e\n")
	f.Add("x /m\\ nfs rw 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMounts(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range m {
			if e.Type == "" || e.Options == "" {
				t.Fatalf("entry %+v from %q", e, s)
			}
		}
	})
}
