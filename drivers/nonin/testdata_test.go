package nonin

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// golden is the expected outcome of one testdata capture, kept beside it as
// <case>.json (tests as data, like Telegraf's testcases).
type golden struct {
	Source   string                 `json:"source"` // where the bytes come from
	Frames   drivertest.FrameCounts `json:"frames"`
	Readings []readingView          `json:"readings"`
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
			var want golden
			drivertest.ReadGolden(t, strings.TrimSuffix(path, filepath.Ext(path))+".json", &want)
			if want.Source == "" {
				t.Fatalf("golden file names no source")
			}
			if want.Readings == nil {
				want.Readings = []readingView{}
			}
			for how, s := range map[string]*drivertest.Recorder{
				"one call":     decodeAll(newDec, input),
				"byte by byte": decodeByteByByte(newDec, input),
			} {
				if s.Frames != want.Frames {
					t.Errorf("%s: frames = %+v, want %+v", how, s.Frames, want.Frames)
				}
				if got := views(s.Readings); !reflect.DeepEqual(got, want.Readings) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, want.Readings)
				}
			}
		})
	}
}
