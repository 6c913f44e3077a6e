package contec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// golden is the expected outcome of decoding one testdata/<case>.hex
// capture with one protocol, kept beside it as <case>.json or, when the
// capture is read with several, <case>.<protocol>.json.
type golden struct {
	Source   string        `json:"source"`   // where the bytes come from
	Protocol string        `json:"protocol"` // the decoder's option
	Decided  string        `json:"decided"`  // what it reads the bytes as at the end
	Frames   frameCounts   `json:"frames"`
	Readings []readingView `json:"readings"`
}

// TestCaptures decodes every testdata/*.hex with every golden file beside
// it, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("testdata", "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) < 6 {
		t.Fatalf("found %d captures in testdata, want at least 6: %v", len(captures), captures)
	}
	for _, path := range captures {
		base := strings.TrimSuffix(path, ".hex")
		goldens, _ := filepath.Glob(base + ".*json")
		var mine []string
		for _, g := range goldens {
			rest := strings.TrimSuffix(strings.TrimPrefix(g, base), ".json")
			if rest == "" || (strings.HasPrefix(rest, ".") && !strings.Contains(rest[1:], ".")) {
				mine = append(mine, g)
			}
		}
		if len(mine) == 0 {
			t.Errorf("%s has no golden file", path)
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		input := hexBytes(string(raw))
		for _, gpath := range mine {
			t.Run(filepath.Base(gpath), func(t *testing.T) {
				want := readGolden(t, gpath)
				p, err := ParseOptions(map[string]any{OptionProtocol: want.Protocol})
				if err != nil {
					t.Fatal(err)
				}
				one := &recordingSink{}
				d := NewDecoder(p)
				d.Feed(input, testNow, one)
				if got := d.Protocol().String(); got != want.Decided {
					t.Errorf("decided %s, want %s", got, want.Decided)
				}
				for how, s := range map[string]*recordingSink{"one call": one, "byte by byte": decodeByteByByte(p, input)} {
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
}

func readGolden(t *testing.T, path string) golden {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("golden file: %v", err)
	}
	if g.Source == "" || g.Protocol == "" {
		t.Fatalf("golden file names no source or protocol")
	}
	if g.Readings == nil {
		g.Readings = []readingView{}
	}
	for i := range g.Readings {
		if g.Readings[i].Flags == nil {
			g.Readings[i].Flags = []string{}
		}
	}
	return g
}
