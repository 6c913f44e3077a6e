package masimo

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// golden is the expected outcome of one testdata/<case>.txt capture, kept
// beside it as <case>.json (tests as data, like Telegraf's testcases).
type golden struct {
	Source   string        `json:"source"` // where the bytes come from
	Frames   frameCounts   `json:"frames"`
	Readings []readingView `json:"readings"`
}

// TestCaptures decodes every testdata/*.txt and compares the result with
// its golden file, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) < 6 {
		t.Fatalf("found %d captures in testdata, want at least 6: %v", len(captures), captures)
	}
	for _, path := range captures {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(strings.TrimSuffix(path, ".txt") + ".json")
			if err != nil {
				t.Fatalf("every capture needs a golden file: %v", err)
			}
			var want golden
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&want); err != nil {
				t.Fatalf("golden file: %v", err)
			}
			if want.Source == "" {
				t.Fatalf("golden file names no source")
			}
			if want.Readings == nil {
				want.Readings = []readingView{}
			}
			for how, s := range map[string]*recordingSink{
				"one call":     decodeAll(input),
				"byte by byte": decodeByteByByte(input),
			} {
				if s.frames != want.Frames {
					t.Errorf("%s: frames = %+v, want %+v", how, s.frames, want.Frames)
				}
				if got := s.views(); !reflect.DeepEqual(got, want.Readings) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, want.Readings)
				}
			}
		})
	}
}
