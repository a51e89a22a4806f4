package drbd

import (
	"bytes"
	"os"
	"testing"
)

func benchParse(b *testing.B, file string, parse func([]byte) error) {
	data, err := os.ReadFile("testdata/samples/" + file)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseStatusJSON(b *testing.B) {
	benchParse(b, "status-json-peer-lost-3node.json", func(d []byte) error { _, err := ParseStatusJSON(d); return err })
}

func BenchmarkParseStatusText(b *testing.B) {
	benchParse(b, "status-verbose-peer-lost-3node.txt", func(d []byte) error { _, err := ParseStatusText(d); return err })
}

func BenchmarkParseEvents(b *testing.B) {
	benchParse(b, "events2-sync.statistics.txt", func(d []byte) error { _, _, err := ParseEvents(bytes.NewReader(d)); return err })
}
