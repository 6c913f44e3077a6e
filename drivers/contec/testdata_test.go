package contec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// golden is the expected outcome of decoding one testdata/<case>.hex
// capture with one protocol, kept beside it as <case>.json or, when the
// capture is read with several, <case>.<protocol>.json.
type golden struct {
	Source   string                 `json:"source"`   // where the bytes come from
	Protocol string                 `json:"protocol"` // the decoder's option
	Decided  string                 `json:"decided"`  // what it reads the bytes as at the end
	Frames   drivertest.FrameCounts `json:"frames"`
	Readings []readingView          `json:"readings"`
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
				one := &drivertest.Recorder{}
				d := NewDecoder(p)
				d.Feed(input, testNow, one)
				if got := d.Protocol().String(); got != want.Decided {
					t.Errorf("decided %s, want %s", got, want.Decided)
				}
				for how, s := range map[string]*drivertest.Recorder{"one call": one, "byte by byte": decodeByteByByte(p, input)} {
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
}

func readGolden(t *testing.T, path string) golden {
	t.Helper()
	var g golden
	drivertest.ReadGolden(t, path, &g)
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
