package mqtt

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// A zone far from UTC, so a missing UTC conversion shows in the goldens.
var testZone = time.FixedZone("UTC+5:30", 5*3600+1800)

var received = time.Date(2025, 3, 1, 15, 30, 0, 123456789, testZone) // 10:00:00.123456789Z

func TestAppendReadingJSONGolden(t *testing.T) {
	tests := []struct {
		name string
		site string
		room string
		r    drivers.Reading
		want string
	}{
		{
			name: "in a session",
			site: "clinic", room: "room-1",
			r:    drivers.Reading{Device: "ox1", Seq: 17, Metric: drivers.SpO2, Value: 97, Valid: true, Received: received, Session: "s-abcdefgh23456789"},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":17,"site":"clinic","room":"room-1","device":"ox1","metric":"spo2","value":97,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,"flags":[],"session":"s-abcdefgh23456789"}`,
		},
		{
			name: "valid",
			site: "clinic", room: "room-1",
			r:    drivers.Reading{Device: "ox1", Seq: 17, Metric: drivers.SpO2, Value: 97, Valid: true, Received: received},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":17,"site":"clinic","room":"room-1","device":"ox1","metric":"spo2","value":97,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,"flags":[],"session":null}`,
		},
		{
			name: "no value",
			site: "clinic", room: "room-1",
			r:    drivers.Reading{Device: "ox1", Seq: 18, Metric: drivers.PulseRate, Value: 511, Valid: false, Received: received},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":18,"site":"clinic","room":"room-1","device":"ox1","metric":"pulse_rate","value":null,"unit":"/min","mdc":"MDC_PULS_OXIM_PULS_RATE","mdc_code":149530,"flags":[],"session":null}`,
		},
		{
			name: "flagged",
			site: "clinic", room: "room-1",
			r: drivers.Reading{Device: "ox1", Seq: 19, Metric: drivers.PerfusionIndex, Value: 0.04, Valid: true, Received: received,
				Flags: drivers.FlagLowPerfusion | drivers.FlagArtifact},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":19,"site":"clinic","room":"room-1","device":"ox1","metric":"perfusion_index","value":0.04,"unit":"%","mdc":"MDC_PULS_OXIM_PERF_REL","mdc_code":150448,"flags":["artifact","low-perfusion"],"session":null}`,
		},
		{
			name: "sensor off, invalid",
			site: "clinic", room: "room-1",
			r: drivers.Reading{Device: "ox1", Seq: 20, Metric: drivers.SpO2, Received: received,
				Flags: drivers.FlagSensorOff},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":20,"site":"clinic","room":"room-1","device":"ox1","metric":"spo2","value":null,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,"flags":["sensor-off"],"session":null}`,
		},
		{
			name: "waveform",
			site: "clinic", room: "room-1",
			r: drivers.Reading{Device: "ox1", Seq: 21, Metric: drivers.Pleth, Valid: true, Value: 5, Received: received,
				Samples: []float64{0, 12, 255.5, 65535, math.NaN()}, SampleRate: 75},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":21,"site":"clinic","room":"room-1","device":"ox1","metric":"pleth","value":null,"unit":"1","mdc":"MDC_PULS_OXIM_PLETH","mdc_code":150452,"flags":[],"samples":[0,12,255.5,65535,null],"sample_rate":75,"session":null}`,
		},
		{
			name: "device time",
			site: "clinic", room: "room-1",
			r: drivers.Reading{Device: "bp1", Seq: 2, Metric: drivers.NIBPSystolic, Value: 121, Valid: true, Received: received,
				DeviceTime: time.Date(2025, 3, 1, 9, 58, 30, 0, time.UTC)},
			want: `{"time":"2025-03-01T09:58:30Z","received":"2025-03-01T10:00:00.123456789Z","seq":2,"site":"clinic","room":"room-1","device":"bp1","metric":"nibp_systolic","value":121,"unit":"mm[Hg]","mdc":"MDC_PRESS_BLD_NONINV_SYS","mdc_code":150021,"flags":[],"session":null}`,
		},
		{
			name: "escaped names",
			site: `cli"nic`, room: "room\\1\n",
			r:    drivers.Reading{Device: "ox\x01\u2028", Seq: 1, Metric: drivers.SpO2, Value: 0.5e-6, Valid: true, Received: received},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":1,"site":"cli\"nic","room":"room\\1\n","device":"ox\u0001\u2028","metric":"spo2","value":0.0000005,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,"flags":[],"session":null}`,
		},
		{
			name: "non-finite value is null",
			site: "clinic", room: "room-1",
			r:    drivers.Reading{Device: "ox1", Seq: 3, Metric: drivers.SpO2, Value: math.Inf(1), Valid: true, Received: received},
			want: `{"time":"2025-03-01T10:00:00.123456789Z","received":"2025-03-01T10:00:00.123456789Z","seq":3,"site":"clinic","room":"room-1","device":"ox1","metric":"spo2","value":null,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,"flags":[],"session":null}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendReadingJSON([]byte("prefix:"), tc.site, tc.room, &tc.r)
			if !bytes.HasPrefix(got, []byte("prefix:")) {
				t.Fatalf("dst not kept: %s", got)
			}
			got = got[len("prefix:"):]
			if string(got) != tc.want {
				t.Errorf("payload\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("not valid JSON: %s", got)
			}
			var p payload
			if err := json.Unmarshal(got, &p); err != nil {
				t.Fatal(err)
			}
			checkDecoded(t, p, tc.site, tc.room, &tc.r)
		})
	}
}

// payload is the reading contract as a consumer decodes it.
type payload struct {
	Time       time.Time  `json:"time"`
	Received   time.Time  `json:"received"`
	Seq        uint64     `json:"seq"`
	Site       string     `json:"site"`
	Room       string     `json:"room"`
	Device     string     `json:"device"`
	Metric     string     `json:"metric"`
	Value      *float64   `json:"value"`
	Unit       string     `json:"unit"`
	MDC        string     `json:"mdc"`
	MDCCode    uint32     `json:"mdc_code"`
	Flags      []string   `json:"flags"`
	Session    *string    `json:"session"`
	Samples    []*float64 `json:"samples"`
	SampleRate *float64   `json:"sample_rate"`
}

func checkDecoded(t *testing.T, p payload, site, room string, r *drivers.Reading) {
	t.Helper()
	wantTime := r.Received
	if !r.DeviceTime.IsZero() {
		wantTime = r.DeviceTime
	}
	info := r.Metric.Info()
	switch {
	case !p.Time.Equal(wantTime) || p.Time.Location() != time.UTC:
		t.Errorf("time %v, want %v in UTC", p.Time, wantTime)
	case !p.Received.Equal(r.Received):
		t.Errorf("received %v, want %v", p.Received, r.Received)
	case p.Seq != r.Seq || p.Device != r.Device || p.Site != site || p.Room != room:
		t.Errorf("identity %d %q %q %q, want %d %q %q %q", p.Seq, p.Device, p.Site, p.Room, r.Seq, r.Device, site, room)
	case p.Metric != r.Metric.String() || p.Unit != info.Unit || p.MDC != info.MDC || p.MDCCode != info.MDCCode:
		t.Errorf("metric %q %q %q %d, want %v", p.Metric, p.Unit, p.MDC, p.MDCCode, info)
	case r.Session == "" && p.Session != nil:
		t.Errorf("session %q, want null", *p.Session)
	case r.Session != "" && (p.Session == nil || *p.Session != r.Session):
		t.Errorf("session %v, want %q", p.Session, r.Session)
	case p.Flags == nil:
		t.Errorf("flags missing or null, want an array")
	case strings.Join(p.Flags, ",") != r.Flags.String():
		t.Errorf("flags %v, want %v", p.Flags, r.Flags.Names())
	}
	finite := !math.IsNaN(r.Value) && !math.IsInf(r.Value, 0)
	if want := r.Valid && finite && len(r.Samples) == 0; want != (p.Value != nil) {
		t.Errorf("value %v, want present=%v", p.Value, want)
	} else if want && *p.Value != r.Value {
		t.Errorf("value %v, want %v", *p.Value, r.Value)
	}
	if len(p.Samples) != len(r.Samples) {
		t.Fatalf("%d samples, want %d", len(p.Samples), len(r.Samples))
	}
	for i, s := range r.Samples {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			if p.Samples[i] != nil {
				t.Errorf("sample %d = %v, want null", i, *p.Samples[i])
			}
		} else if p.Samples[i] == nil || *p.Samples[i] != s {
			t.Errorf("sample %d = %v, want %v", i, p.Samples[i], s)
		}
	}
	if len(r.Samples) > 0 {
		if math.IsNaN(r.SampleRate) || math.IsInf(r.SampleRate, 0) {
			if p.SampleRate != nil {
				t.Errorf("sample_rate %v, want null", *p.SampleRate)
			}
		} else if p.SampleRate == nil || *p.SampleRate != r.SampleRate {
			t.Errorf("sample_rate %v, want %v", p.SampleRate, r.SampleRate)
		}
	}
}

// Random bit patterns cover subnormals, huge magnitudes, negative zero, NaN
// payloads and infinities: every one must give valid JSON, a plain decimal
// that parses back to exactly the same value, or null when not finite.
func TestAppendReadingJSONRandomFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specials := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1),
		math.MaxFloat64, math.SmallestNonzeroFloat64, -math.MaxFloat64, 1e21, 1e-7, 123456789.125}
	var dst []byte
	for i := range 5000 {
		var v float64
		switch {
		case i < len(specials):
			v = specials[i]
		case i%2 == 0:
			v = math.Float64frombits(rng.Uint64())
		default:
			v = (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(40)-20))
		}
		r := drivers.Reading{Device: "d", Seq: uint64(i), Metric: drivers.SpO2, Value: v, Valid: true, Received: received,
			Samples: nil}
		if i%3 == 0 {
			r.Samples = []float64{v, -v}
			r.SampleRate = v
		}
		dst = AppendReadingJSON(dst[:0], "s", "r", &r)
		if !json.Valid(dst) {
			t.Fatalf("invalid JSON for %v: %s", v, dst)
		}
		for _, num := range numbersIn(t, dst) {
			if strings.ContainsAny(num, "eE") || strings.EqualFold(num, "nan") || strings.Contains(num, "Inf") {
				t.Fatalf("number %q for %v is not plain decimal", num, v)
			}
		}
		var p payload
		if err := json.Unmarshal(dst, &p); err != nil {
			t.Fatalf("%v: %s", err, dst)
		}
		checkDecoded(t, p, "s", "r", &r)
		if t.Failed() {
			t.Fatalf("value %v (bits %x): %s", v, math.Float64bits(v), dst)
		}
	}
}

// numbersIn returns the text of every number token in a JSON document.
func numbersIn(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var out []string
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if n, ok := tok.(json.Number); ok {
			out = append(out, string(n))
		}
	}
	return out
}

func FuzzAppendReadingJSON(f *testing.F) {
	f.Add("clinic", "room-1", "ox1", 97.0, uint32(0))
	f.Add(`a"b`, "\x00\xff", "\u2029", math.Inf(-1), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, site, room, device string, v float64, flags uint32) {
		r := drivers.Reading{Device: device, Seq: 1, Metric: drivers.PulseRate, Value: v, Valid: true,
			Received: received, Flags: drivers.Flags(flags)}
		out := AppendReadingJSON(nil, site, room, &r)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %q", out)
		}
		var p payload
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		// Valid UTF-8 names come back unchanged; invalid bytes become U+FFFD.
		for _, pair := range [][2]string{{site, p.Site}, {room, p.Room}, {device, p.Device}} {
			if utf8.ValidString(pair[0]) && pair[0] != pair[1] {
				t.Fatalf("name %q decoded as %q", pair[0], pair[1])
			}
		}
	})
}

func TestStatusPayloads(t *testing.T) {
	since := time.Date(2025, 3, 1, 15, 30, 0, 0, testZone)
	got := string(appendRoomStatusJSON(nil, "online", `1.2.0 "rc"`, since))
	want := `{"state":"online","version":"1.2.0 \"rc\"","since":"2025-03-01T10:00:00Z"}`
	if got != want {
		t.Errorf("room status\n got %s\nwant %s", got, want)
	}

	got = string(appendDeviceStatusJSON(nil, devstatus.Status{Device: "ox1", State: devstatus.Connected, Since: since}))
	want = `{"state":"connected","since":"2025-03-01T10:00:00Z","last_error":null,"conditions":[]}`
	if got != want {
		t.Errorf("device status\n got %s\nwant %s", got, want)
	}

	got = string(appendDeviceStatusJSON(nil, devstatus.Status{Device: "ox1", State: devstatus.Disconnected, Since: since,
		LastError: "open /dev/ttyUSB0: no such file or directory"}))
	want = `{"state":"disconnected","since":"2025-03-01T10:00:00Z","last_error":"open /dev/ttyUSB0: no such file or directory","conditions":[]}`
	if got != want {
		t.Errorf("device status\n got %s\nwant %s", got, want)
	}

	// Conditions appear once each, in devstatus.Conditions() order, whatever
	// order (or repetition) the caller gave; unknown values are left out.
	got = string(appendDeviceStatusJSON(nil, devstatus.Status{Device: "ox1", State: devstatus.Connected, Since: since,
		Conditions: []devstatus.Condition{devstatus.SensorFault, "bogus", devstatus.SensorOff, devstatus.SensorFault}}))
	want = `{"state":"connected","since":"2025-03-01T10:00:00Z","last_error":null,"conditions":["sensor-off","sensor-fault"]}`
	if got != want {
		t.Errorf("device status\n got %s\nwant %s", got, want)
	}
	all := string(appendDeviceStatusJSON(nil, devstatus.Status{Device: "ox1", State: devstatus.Connected, Since: since,
		Conditions: devstatus.Conditions()}))
	var decoded struct{ Conditions []string }
	if err := json.Unmarshal([]byte(all), &decoded); err != nil {
		t.Fatalf("%s: %v", all, err)
	}
	if want := []string{"sensor-off", "searching", "low-signal-quality", "cuff-error", "sensor-fault"}; !slices.Equal(decoded.Conditions, want) {
		t.Errorf("all conditions: %v, want %v", decoded.Conditions, want)
	}
}

func benchReadings() []drivers.Reading {
	return []drivers.Reading{
		{Device: "masimo-1", Seq: 123456, Metric: drivers.SpO2, Value: 97, Valid: true, Received: received,
			Flags: drivers.FlagLowPerfusion | drivers.FlagArtifact},
		{Device: "masimo-1", Seq: 123457, Metric: drivers.PerfusionIndex, Value: 1.23, Valid: true, Received: received,
			DeviceTime: received.Add(-time.Second)},
		{Device: "nonin-1", Seq: 9, Metric: drivers.Pleth, Valid: true, Received: received, SampleRate: 75,
			Samples: []float64{120, 130, 145, 160, 171, 180, 176, 165, 150, 138, 127, 121, 119, 118, 120, 124, 130, 137, 142, 140, 133, 126, 121, 119, 118}},
	}
}

func TestAppendReadingJSONDoesNotAllocate(t *testing.T) {
	rs := benchReadings()
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range rs {
			dst = AppendReadingJSON(dst[:0], "clinic-north", "room-3", &rs[i])
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run with a reused buffer, want 0", allocs)
	}
}

func BenchmarkAppendReadingJSON(b *testing.B) {
	for _, r := range benchReadings() {
		b.Run(r.Metric.String(), func(b *testing.B) {
			dst := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendReadingJSON(dst[:0], "clinic-north", "room-3", &r)
			}
			b.SetBytes(int64(len(dst)))
			b.ReportMetric(float64(len(dst)), "payload_bytes")
		})
	}
}

// The JSON number grammar has no leading '+' or '.', so a value formatted by
// strconv 'f' must always start with a digit or '-'.
func TestNumberFormatGrammar(t *testing.T) {
	for _, v := range []float64{0.5, -0.5, 1e-300, 5e-324, 1e308} {
		s := string(appendNumberJSON(nil, v))
		if s[0] != '-' && (s[0] < '0' || s[0] > '9') {
			t.Errorf("%v formatted as %q", v, s)
		}
		back, err := strconv.ParseFloat(s, 64)
		if err != nil || back != v {
			t.Errorf("%q parses back as %v, %v; want %v", s, back, err, v)
		}
	}
}
