package hl7server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit is the generous deadline of every wait: never a timing claim.
const waitLimit = 10 * time.Second

// captures is the hl7 package's testdata: raw MLLP streams and their
// expected outcomes.
var captures = filepath.Join("..", "..", "drivers", "hl7", "testdata")

// golden is the part of a capture's expected outcome these tests use.
type golden struct {
	Messages []struct {
		Error     string `json:"error"`
		Sender    string `json:"sender"`
		ControlID string `json:"control_id"`
		Readings  int    `json:"readings"`
	} `json:"messages"`
	Readings []goldenReading `json:"readings"`
}

type goldenReading struct {
	Metric     string  `json:"metric"`
	Value      float64 `json:"value"`
	Valid      bool    `json:"valid"`
	DeviceTime string  `json:"device_time"`
}

func loadCapture(t *testing.T, name string) ([]byte, golden) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(captures, name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(captures, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(js, &g); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return raw, g
}

// view is a reading as the golden files describe it.
func view(r drivers.Reading) goldenReading {
	return goldenReading{Metric: r.Metric.String(), Value: r.Value, Valid: r.Valid, DeviceTime: r.DeviceTime.Format(time.RFC3339)}
}

// recordingSink is a device's pipeline in the tests. It also catches two
// goroutines inside it at once, which the server must never cause.
type recordingSink struct {
	inside  atomic.Int32
	overlap atomic.Bool

	mu       sync.Mutex
	readings []drivers.Reading
	events   []string // "r:<metric>" and "f:<result>"
	frames   map[drivers.FrameResult]int
	dropped  int
}

func (s *recordingSink) enter() {
	if s.inside.Add(1) != 1 {
		s.overlap.Store(true)
	}
	runtime.Gosched() // give an overlapping caller its chance
}

func (s *recordingSink) Reading(r drivers.Reading) {
	s.enter()
	defer s.inside.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readings = append(s.readings, r)
	s.events = append(s.events, "r:"+r.Metric.String())
}

func (s *recordingSink) Frame(result drivers.FrameResult, dropped int) {
	s.enter()
	defer s.inside.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frames == nil {
		s.frames = map[drivers.FrameResult]int{}
	}
	s.frames[result]++
	s.dropped += dropped
	s.events = append(s.events, "f:"+result.String())
}

func (s *recordingSink) views() []goldenReading {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []goldenReading{}
	for _, r := range s.readings {
		out = append(out, view(r))
	}
	return out
}

func (s *recordingSink) eventList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func (s *recordingSink) frameCount(r drivers.FrameResult) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames[r]
}

func (s *recordingSink) readingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.readings)
}

type statusEvent struct {
	device    string
	connected bool
	reason    string
}

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a running Server with recording callbacks.
type harness struct {
	t     *testing.T
	srv   *Server
	sinks map[string]*recordingSink // by device id
	logs  *syncBuffer

	cancel context.CancelFunc
	served chan error

	mu       sync.Mutex
	statuses []statusEvent
	rejected map[string]int
	unknown  []string
}

// start runs a Server on 127.0.0.1:0 with one device per id -> sender.
// tweak may change the options before Listen.
func start(t *testing.T, senders map[string]string, tweak func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, sinks: map[string]*recordingSink{}, logs: &syncBuffer{}, rejected: map[string]int{}}
	o := Options{
		Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnStatus: func(id string, connected bool, _ time.Time, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.statuses = append(h.statuses, statusEvent{id, connected, reason})
		},
		OnRejected: func(reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.rejected[reason]++
		},
		OnUnknownCode: func(code string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.unknown = append(h.unknown, code)
		},
	}
	for id, sender := range senders {
		s := &recordingSink{}
		h.sinks[id] = s
		o.Devices = append(o.Devices, Device{ID: id, Sender: sender, Sink: s})
	}
	if tweak != nil {
		tweak(&o)
	}
	srv, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.served = make(chan error, 1)
	go func() { h.served <- srv.Serve(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Serve and checks it returned nil; safe to call twice.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.served:
		if ok && err != nil {
			h.t.Errorf("Serve: %v", err)
		}
		if ok {
			close(h.served)
		}
	case <-time.After(waitLimit):
		h.t.Fatal("Serve did not return after cancel")
	}
}

func (h *harness) statusList() []statusEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]statusEvent(nil), h.statuses...)
}

func (h *harness) rejections() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.rejected {
		out[k] = v
	}
	return out
}

func (h *harness) unknownCodes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.unknown...)
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// monitor is the client side: a monitor's connection.
type monitor struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func connect(t *testing.T, addr string) *monitor {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &monitor{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (m *monitor) send(p []byte) {
	m.t.Helper()
	if _, err := m.Write(p); err != nil {
		m.t.Fatal(err)
	}
}

// ack is the MSA segment of an acknowledgement.
type ack struct {
	code, controlID, text string
	raw                   string
}

// nextACK reads one MLLP block and returns its MSA fields.
func (m *monitor) nextACK() (ack, error) {
	_ = m.SetReadDeadline(time.Now().Add(waitLimit))
	start, err := m.r.ReadByte()
	if err != nil {
		return ack{}, err
	}
	if start != 0x0B {
		return ack{}, fmt.Errorf("ACK starts with %#x, not VT", start)
	}
	body, err := m.r.ReadBytes(0x1C)
	if err != nil {
		return ack{}, err
	}
	if cr, err := m.r.ReadByte(); err != nil || cr != 0x0D {
		return ack{}, fmt.Errorf("ACK block not ended by FS CR (%#x, %v)", cr, err)
	}
	a := ack{raw: string(body[:len(body)-1])}
	for seg := range strings.SplitSeq(a.raw, "\r") {
		if f := strings.Split(seg, "|"); f[0] == "MSA" {
			a.code = f[1]
			if len(f) > 2 {
				a.controlID = f[2]
			}
			if len(f) > 3 {
				a.text = f[3]
			}
			return a, nil
		}
	}
	return ack{}, fmt.Errorf("ACK has no MSA segment: %q", a.raw)
}

func (m *monitor) mustACK(code, controlID string) ack {
	m.t.Helper()
	a, err := m.nextACK()
	if err != nil {
		m.t.Fatalf("reading ACK: %v", err)
	}
	if a.code != code || a.controlID != controlID {
		m.t.Fatalf("ACK %s for %q, want %s for %q (%q)", a.code, a.controlID, code, controlID, a.raw)
	}
	return a
}

// closedByServer reports whether the server closed the connection: a read
// ends with EOF or a reset, not a timeout.
func (m *monitor) closedByServer() bool {
	_ = m.SetReadDeadline(time.Now().Add(waitLimit))
	_, err := m.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// withControlID returns msg with its MSH-10 replaced.
func withControlID(t *testing.T, msg []byte, old, id string) []byte {
	t.Helper()
	if !bytes.Contains(msg, []byte("|"+old+"|")) {
		t.Fatalf("message has no control id %q", old)
	}
	return bytes.Replace(msg, []byte("|"+old+"|"), []byte("|"+id+"|"), 1)
}
