package simulator

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lineEncoder is a made-up line protocol for testing the player without a
// real driver: "T=<unix ms> SPO2=97 BPM=70 PI=3.50 FLAGS=sensor-off\r\n",
// with "---" for a missing value and "-" for no flags.
type lineEncoder struct{ interval time.Duration }

func (e lineEncoder) Interval() time.Duration { return e.interval }

func (lineEncoder) Encode(dst []byte, f drivers.Frame) []byte {
	dst = append(dst, "T="...)
	dst = strconv.AppendInt(dst, f.Time.UnixMilli(), 10)
	field := func(key string, id drivers.MetricID, prec int) {
		dst = append(dst, ' ')
		dst = append(dst, key...)
		dst = append(dst, '=')
		if v, ok := f.Values[id]; ok {
			dst = strconv.AppendFloat(dst, v, 'f', prec, 64)
		} else {
			dst = append(dst, "---"...)
		}
	}
	field("SPO2", drivers.SpO2, 0)
	field("BPM", drivers.PulseRate, 0)
	field("PI", drivers.PerfusionIndex, 2)
	dst = append(dst, " FLAGS="...)
	if f.Flags == 0 {
		dst = append(dst, '-')
	} else {
		dst = append(dst, f.Flags.String()...)
	}
	return append(dst, '\r', '\n')
}

// lineFrame is one decoded line of the test protocol.
type lineFrame struct {
	Time        time.Time
	SpO2, Pulse float64 // NaN when "---"
	PI          float64
	Flags       string
}

func parseLine(line string) (lineFrame, error) {
	var lf lineFrame
	fields := strings.Fields(line)
	if len(fields) != 5 {
		return lf, fmt.Errorf("not a frame: %q", line)
	}
	want := []string{"T", "SPO2", "BPM", "PI", "FLAGS"}
	vals := make([]string, 5)
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != want[i] {
			return lf, fmt.Errorf("not a frame: %q", line)
		}
		vals[i] = v
	}
	ms, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil {
		return lf, err
	}
	lf.Time = time.UnixMilli(ms)
	num := func(s string) (float64, error) {
		if s == "---" {
			return math.NaN(), nil
		}
		return strconv.ParseFloat(s, 64)
	}
	if lf.SpO2, err = num(vals[1]); err != nil {
		return lf, err
	}
	if lf.Pulse, err = num(vals[2]); err != nil {
		return lf, err
	}
	if lf.PI, err = num(vals[3]); err != nil {
		return lf, err
	}
	lf.Flags = vals[4]
	return lf, nil
}

// lineDriver is a driver whose encoder is lineEncoder.
func lineDriver(interval time.Duration) *drivers.Driver {
	return &drivers.Driver{
		Name: "test-line",
		NewDecoder: func(drivers.Options) (drivers.Decoder, error) {
			return nil, errors.New("test-line has no decoder")
		},
		NewEncoder: func(drivers.Options) (drivers.Encoder, error) {
			return lineEncoder{interval: interval}, nil
		},
	}
}

// hostPort is the host side: a serial port opened through go.bug.st/serial
// as the agent opens it, read with its own line framing (never bufio on a
// serial port: ecosystem.md "Serial").
type hostPort struct {
	t    testing.TB
	port serial.Port
	buf  []byte
}

func openHost(t testing.TB, path string) *hostPort {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	if err := p.SetReadTimeout(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	h := &hostPort{t: t, port: p}
	t.Cleanup(func() { _ = p.Close() })
	return h
}

// line returns the next CRLF-terminated line, or an error when the port
// fails or nothing arrives before the deadline.
func (h *hostPort) line(deadline time.Duration) (string, error) {
	end := time.Now().Add(deadline)
	chunk := make([]byte, 512)
	for {
		if i := bytes.Index(h.buf, []byte("\r\n")); i >= 0 {
			l := string(h.buf[:i])
			h.buf = h.buf[i+2:]
			return l, nil
		}
		if time.Now().After(end) {
			return "", fmt.Errorf("no line within %v (have %q)", deadline, h.buf)
		}
		n, err := h.port.Read(chunk)
		h.buf = append(h.buf, chunk[:n]...)
		if err != nil {
			return "", err
		}
	}
}

// frame returns the next line that parses as a frame, skipping others.
func (h *hostPort) frame(deadline time.Duration) (lineFrame, error) {
	end := time.Now().Add(deadline)
	for {
		l, err := h.line(time.Until(end))
		if err != nil {
			return lineFrame{}, err
		}
		if lf, err := parseLine(l); err == nil {
			return lf, nil
		}
	}
}

// steady is a one-step scenario with exact values (no noise).
func steady(loop bool, d time.Duration) *Scenario {
	return &Scenario{
		Name: "steady",
		Loop: loop,
		Steps: []Step{{
			Name:     "steady",
			Duration: d,
			Values:   map[drivers.MetricID]float64{drivers.SpO2: 96, drivers.PulseRate: 64, drivers.PerfusionIndex: 2.75},
		}},
	}
}
