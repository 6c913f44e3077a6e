package nonin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
)

// golden is the expected outcome of one testdata capture, kept beside it as
// <case>.json (tests as data, like Telegraf's testcases).
type golden struct {
	Source   string        `json:"source"` // where the bytes come from
	Frames   frameCounts   `json:"frames"`
	Readings []readingView `json:"readings"`
}

// readCapture reads a capture: .txt files are the bytes themselves; .hex
// files are hex bytes separated by white space, with # comments to the end
// of a line.
func readCapture(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil || !strings.HasSuffix(path, ".hex") {
		return raw, err
	}
	var out []byte
	for n, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, field := range strings.Fields(line) {
			b, err := hex.DecodeString(field)
			if err != nil || len(b) != 1 {
				return nil, fmt.Errorf("%s:%d: %q is not one hex byte", path, n+1, field)
			}
			out = append(out, b[0])
		}
	}
	return out, nil
}

// decoderForCapture picks the decoder by the capture's name prefix.
func decoderForCapture(name string) func() drivers.Decoder {
	switch {
	case strings.HasPrefix(name, "df2-"):
		return df2
	case strings.HasPrefix(name, "df7-"):
		return df7
	case strings.HasPrefix(name, "df8-"):
		return df8
	case strings.HasPrefix(name, "ascii-"):
		return asciiDc
	}
	return nil
}

// TestCaptures decodes every testdata capture and compares the result with
// its golden file, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	var captures []string
	for _, pattern := range []string{"*.hex", "*.txt"} {
		m, err := filepath.Glob(filepath.Join("testdata", pattern))
		if err != nil {
			t.Fatal(err)
		}
		captures = append(captures, m...)
	}
	if len(captures) < 7 {
		t.Fatalf("found %d captures in testdata, want at least 7: %v", len(captures), captures)
	}
	for _, path := range captures {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			newDec := decoderForCapture(name)
			if newDec == nil {
				t.Fatalf("capture %s: name must start with df2-, df7-, df8- or ascii-", name)
			}
			input, err := readCapture(path)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(strings.TrimSuffix(path, filepath.Ext(path)) + ".json")
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
				"one call":     decodeAll(newDec, input),
				"byte by byte": decodeByteByByte(newDec, input),
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
