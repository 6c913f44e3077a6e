package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/broker"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

// waitLimit is generous: these waits end as soon as the condition holds.
const waitLimit = 30 * time.Second

const (
	testSite     = "clinic"
	testRoom     = "room-1"
	roomStatus   = "vigil/clinic/room-1/status"
	readingsOnly = "vigil/clinic/room-1/ox1/+"
)

// message is one message as a subscriber saw it.
type message struct {
	Topic    string
	Payload  string
	Retained bool
}

// subscriber is a plain paho client that records what it receives.
type subscriber struct {
	client  paho.Client
	mu      sync.Mutex
	msgs    []message
	changed chan struct{}
}

// subscribe connects to url and subscribes to filter at QoS 1. With a
// clientID it keeps a persistent session (CleanSession=false), so the
// broker queues messages for it while it is disconnected.
func subscribe(t *testing.T, url, filter, clientID string) *subscriber {
	t.Helper()
	s := &subscriber{changed: make(chan struct{}, 1)}
	opts := paho.NewClientOptions().AddBroker(url).SetAutoReconnect(true).
		SetMaxReconnectInterval(time.Second).SetConnectTimeout(5 * time.Second)
	if clientID != "" {
		opts.SetClientID(clientID).SetCleanSession(false)
	}
	s.client = paho.NewClient(opts)
	if tok := s.client.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(100) })
	tok := s.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained()})
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return s
}

func (s *subscriber) messages() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// waitFor waits until cond holds for the messages received so far.
func (s *subscriber) waitFor(t *testing.T, what string, cond func([]message) bool) []message {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		msgs := s.messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; received %d messages: %v", what, len(msgs), tail(msgs, 5))
		}
	}
}

func tail(msgs []message, n int) []message {
	return msgs[max(0, len(msgs)-n):]
}

// isReading tells reading topics from the device status topic, which the
// readingsOnly filter also matches.
func isReading(topic string) bool {
	return matchTopic(readingsOnly, topic) && !strings.HasSuffix(topic, "/status")
}

func readingsIn(msgs []message) []message {
	var out []message
	for _, m := range msgs {
		if isReading(m.Topic) {
			out = append(out, m)
		}
	}
	return out
}

// matchTopic matches MQTT filters with "+" levels.
func matchTopic(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	if len(f) != len(tp) {
		return false
	}
	for i := range f {
		if f[i] != "+" && f[i] != tp[i] {
			return false
		}
	}
	return true
}

type statusPayload struct {
	State     string    `json:"state"`
	Version   string    `json:"version"`
	Since     time.Time `json:"since"`
	LastError *string   `json:"last_error"`
}

func decodeStatus(t *testing.T, m message) statusPayload {
	t.Helper()
	var s statusPayload
	if err := json.Unmarshal([]byte(m.Payload), &s); err != nil {
		t.Fatalf("status payload %q: %v", m.Payload, err)
	}
	return s
}

// hasState reports whether a message on topic carries state (and, when
// retained is true, was delivered as a retained message).
func hasState(topic, state string, retained bool) func([]message) bool {
	return func(msgs []message) bool {
		for _, m := range msgs {
			if m.Topic != topic || (retained && !m.Retained) {
				continue
			}
			var s statusPayload
			if json.Unmarshal([]byte(m.Payload), &s) == nil && s.State == state {
				return true
			}
		}
		return false
	}
}

// lastState is the state of the last message on topic, "" when none.
func lastState(msgs []message, topic string) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Topic == topic {
			var s statusPayload
			if json.Unmarshal([]byte(msgs[i].Payload), &s) == nil {
				return s.State
			}
		}
	}
	return ""
}

// connectionLog records OnConnectionChange and OnPublishError calls.
type connectionLog struct {
	mu      sync.Mutex
	changes []bool
	errs    []error
	changed chan struct{}
}

func newConnectionLog() *connectionLog { return &connectionLog{changed: make(chan struct{}, 1)} }

func (l *connectionLog) change(up bool) {
	l.mu.Lock()
	l.changes = append(l.changes, up)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *connectionLog) publishError(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *connectionLog) snapshot() ([]bool, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes), slices.Clone(l.errs)
}

func (l *connectionLog) waitChanges(t *testing.T, want []bool) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		got, _ := l.snapshot()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) {
			t.Fatalf("connection changes %v, want %v", got, want)
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("timed out: connection changes %v, want %v", got, want)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startPublisher(t *testing.T, url string, log *connectionLog) *Publisher {
	t.Helper()
	p, err := New(Options{
		URL: url, Site: testSite, Room: testRoom, Version: "test-1.0",
		ClientID:           "vigil-test-" + strings.ReplaceAll(t.Name(), "/", "-"),
		KeepAlive:          2 * time.Second,
		Logger:             testLogger(t),
		OnConnectionChange: log.change,
		OnPublishError:     log.publishError,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func reading(seq uint64) drivers.Reading {
	metric := drivers.SpO2
	value := float64(90 + seq%10)
	if seq%2 == 0 {
		metric, value = drivers.PulseRate, float64(60+seq%40)
	}
	return drivers.Reading{Device: "ox1", Seq: seq, Metric: metric, Value: value, Valid: seq%7 != 0,
		Received: time.Date(2025, 3, 1, 10, 0, 0, int(seq)*1000, time.UTC), Flags: drivers.Flags(seq % 4)}
}

func expected(seq uint64) message {
	r := reading(seq)
	return message{
		Topic:   "vigil/clinic/room-1/ox1/" + r.Metric.String(),
		Payload: string(AppendReadingJSON(nil, testSite, testRoom, &r)),
	}
}

func consume(p *Publisher, from, to uint64) {
	for seq := from; seq <= to; seq++ {
		r := reading(seq)
		p.Consume(&r)
	}
}

func seqOf(t *testing.T, m message) uint64 {
	t.Helper()
	var p struct{ Seq uint64 }
	if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
		t.Fatalf("%s: %v", m.Payload, err)
	}
	return p.Seq
}

// checkExactlyInOrder asserts msgs are the readings from..to, each once, in
// order, with the exact expected topic and payload.
func checkExactlyInOrder(t *testing.T, msgs []message, from, to uint64) {
	t.Helper()
	if uint64(len(msgs)) != to-from+1 {
		t.Fatalf("%d readings, want %d", len(msgs), to-from+1)
	}
	for i, m := range msgs {
		want := expected(from + uint64(i))
		if m.Topic != want.Topic || m.Payload != want.Payload || m.Retained {
			t.Fatalf("reading %d:\n got %s %s (retained %v)\nwant %s %s", i, m.Topic, m.Payload, m.Retained, want.Topic, want.Payload)
		}
	}
}

func TestPublisherMosquitto(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	sub := subscribe(t, mosq.URL(), readingsOnly, "")
	statusSub := subscribe(t, mosq.URL(), "vigil/#", "")
	log := newConnectionLog()

	// Readings offered right after Start are queued until the connection is
	// up, then sent in order.
	p := startPublisher(t, mosq.URL(), log)
	const n = 300
	consume(p, 1, n)
	msgs := sub.waitFor(t, "all readings", func(m []message) bool { return len(m) >= n })
	checkExactlyInOrder(t, msgs, 1, n)
	log.waitChanges(t, []bool{true})
	if !p.Connected() {
		t.Error("Connected() = false after readings arrived")
	}

	// A subscriber arriving after the status was published gets it retained.
	statusSub.waitFor(t, "online", hasState(roomStatus, "online", false))
	late := subscribe(t, mosq.URL(), roomStatus, "")
	msgs = late.waitFor(t, "retained online", hasState(roomStatus, "online", true))
	if s := decodeStatus(t, msgs[0]); s.Version != "test-1.0" || s.Since.IsZero() || s.Since.Location() != time.UTC {
		t.Errorf("room status %+v", s)
	}

	// Device statuses are retained; only the latest one is kept.
	since := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	p.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Silent, Since: since, LastError: "no frame for 10s"})
	p.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Connected, Since: since.Add(time.Second),
		Conditions: []devstatus.Condition{devstatus.LowSignalQuality}})
	statusSub.waitFor(t, "device status", hasState("vigil/clinic/room-1/ox1/status", "connected", false))
	lateDevice := subscribe(t, mosq.URL(), "vigil/clinic/room-1/+/status", "")
	msgs = lateDevice.waitFor(t, "retained device status", hasState("vigil/clinic/room-1/ox1/status", "connected", true))
	for _, m := range msgs {
		if m.Topic == "vigil/clinic/room-1/ox1/status" {
			if m.Payload != `{"state":"connected","since":"2025-03-01T10:00:01Z","last_error":null,"conditions":["low-signal-quality"]}` {
				t.Errorf("retained device status %s", m.Payload)
			}
		}
	}

	// Close publishes offline, retained, and waits for the acknowledgement.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	statusSub.waitFor(t, "offline", hasState(roomStatus, "offline", false))
	afterClose := subscribe(t, mosq.URL(), roomStatus, "")
	msgs = afterClose.waitFor(t, "retained offline", hasState(roomStatus, "offline", true))
	if s := decodeStatus(t, msgs[0]); s.Version != "test-1.0" {
		t.Errorf("offline status %+v", s)
	}
	log.waitChanges(t, []bool{true, false})
	if p.Connected() {
		t.Error("Connected() = true after Close")
	}
	if _, errs := log.snapshot(); len(errs) != 0 {
		t.Errorf("publish errors: %v", errs)
	}

	// After Close, readings are refused and reported, never silently lost.
	r := reading(n + 1)
	p.Consume(&r)
	if _, errs := log.snapshot(); len(errs) != 1 || !errors.Is(errs[0], ErrClosed) {
		t.Errorf("errors after Close: %v, want one ErrClosed", errs)
	}
	if got := len(readingsIn(sub.messages())); got != n {
		t.Errorf("%d readings after Close, want %d", got, n)
	}
}

// tcpProxy sits between the publisher and the broker so a test can cut the
// connection the way a network failure does: the broker sees the socket
// close without an MQTT DISCONNECT.
type tcpProxy struct {
	t      *testing.T
	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	refuse bool // close new connections at once, like a broken network
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, target: target, ln: ln}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *tcpProxy) URL() string { return "tcp://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			client.Close()
			continue
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, upstream)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(client, upstream)
		go p.pipe(upstream, client)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every proxied connection; new connections are still accepted.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Break cuts every connection and refuses new ones until Mend.
func (p *tcpProxy) Break() {
	p.mu.Lock()
	p.refuse = true
	p.mu.Unlock()
	p.Cut()
}

func (p *tcpProxy) Mend() {
	p.mu.Lock()
	p.refuse = false
	p.mu.Unlock()
}

// Close stops accepting and cuts every connection.
func (p *tcpProxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func TestPublisherConnectionLoss(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	proxy := startProxy(t, mosq.Addr())
	sub := subscribe(t, mosq.URL(), "vigil/#", "")
	log := newConnectionLog()
	p := startPublisher(t, proxy.URL(), log)

	consume(p, 1, 50)
	sub.waitFor(t, "first readings", func(m []message) bool { return len(readingsIn(m)) >= 50 })
	log.waitChanges(t, []bool{true})
	since := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	p.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Connected, Since: since})
	sub.waitFor(t, "device status", hasState("vigil/clinic/room-1/ox1/status", "connected", false))

	// The network fails while a burst of readings is on its way, so some
	// are unacknowledged in paho's store and some still in the backlog: the
	// broker publishes the Last Will.
	consume(p, 51, 100)
	proxy.Break()
	msgs := sub.waitFor(t, "Last Will offline", hasState(roomStatus, "offline", false))
	log.waitChanges(t, []bool{true, false})
	for _, m := range msgs {
		if m.Topic == roomStatus && decodeStatus(t, m).State == "offline" {
			if s := decodeStatus(t, m); s.Version != "test-1.0" || s.Since.IsZero() {
				t.Errorf("will payload %+v", s)
			}
		}
	}

	// Readings and a status change while disconnected are sent after the
	// reconnect, in order, and the room is online again.
	consume(p, 101, 150)
	p.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Silent, Since: since.Add(time.Minute), LastError: "no frame"})
	proxy.Mend()
	for seq := uint64(151); seq <= 250; seq++ { // while reconnecting and resending
		consume(p, seq, seq)
		time.Sleep(time.Millisecond)
	}
	log.waitChanges(t, []bool{true, false, true})
	msgs = sub.waitFor(t, "readings after reconnect", func(m []message) bool { return distinctSeqs(t, readingsIn(m)) >= 250 })
	checkOrderedAtLeastOnce(t, readingsIn(msgs), 1, 250)
	msgs = sub.waitFor(t, "online again", func(m []message) bool { return lastState(m, roomStatus) == "online" })
	if got := lastState(msgs, "vigil/clinic/room-1/ox1/status"); got != "silent" {
		t.Errorf("device status after reconnect %q, want silent", got)
	}

	// The broker becomes unreachable for good: Close cannot get the offline
	// status acknowledged and says so when its deadline passes.
	proxy.Close()
	log.waitChanges(t, []bool{true, false, true, false})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := p.Close(ctx)
	var unacked *UnacknowledgedError
	if !errors.As(err, &unacked) || unacked.Count < 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with the broker unreachable: %v, want *UnacknowledgedError wrapping DeadlineExceeded", err)
	}
	// The broker still shows the will's offline, retained.
	late := subscribe(t, mosq.URL(), roomStatus, "")
	late.waitFor(t, "retained offline", hasState(roomStatus, "offline", true))
}

func distinctSeqs(t *testing.T, msgs []message) int {
	seen := map[uint64]bool{}
	for _, m := range msgs {
		seen[seqOf(t, m)] = true
	}
	return len(seen)
}

// checkOrderedAtLeastOnce asserts that every reading from..to arrived with
// its exact payload, and that first arrivals are in sequence order. QoS 1
// allows duplicates (a message resent after a reconnect that the broker had
// already received); a duplicate must repeat a sequence already seen.
func checkOrderedAtLeastOnce(t *testing.T, msgs []message, from, to uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	next := from
	for _, m := range msgs {
		seq := seqOf(t, m)
		want := expected(seq)
		if m.Topic != want.Topic || m.Payload != want.Payload {
			t.Fatalf("seq %d:\n got %s %s\nwant %s %s", seq, m.Topic, m.Payload, want.Topic, want.Payload)
		}
		if seen[seq] {
			continue
		}
		if seq != next {
			t.Fatalf("first arrival of seq %d, want %d (order broken or reading lost)", seq, next)
		}
		seen[seq] = true
		next++
	}
	if next != to+1 {
		t.Fatalf("readings %d..%d arrived, want up to %d", from, next-1, to)
	}
}

// TestPublisherBrokerRestart stops Mosquitto while readings keep coming and
// restarts it on the same port.
//
// What the publisher guarantees, and this test proves: every reading
// Consume accepted, before, during and after the outage, reaches the broker
// after the restart, and the first arrival of each reading is in Consume
// order (paho keeps unacknowledged messages in its ordered store and
// resends them on reconnect; the publisher holds new readings until that
// resend is acknowledged). Duplicates are allowed (QoS 1).
//
// What it needs from the broker: Mosquitto here runs with persistence and is
// stopped cleanly (SIGTERM), so the subscriber's persistent session and the
// messages queued for it survive the restart. Without persistence, or after
// a crash (SIGKILL), the broker loses messages it had acknowledged but not
// yet forwarded, and messages for a subscriber that has not resubscribed
// yet: the publisher cannot see that loss. Durable store-and-forward is the
// outbox's job, not this package's.
func TestPublisherBrokerRestart(t *testing.T) {
	mosq := testbroker.StartMosquitto(t, testbroker.WithPersistence())
	sub := subscribe(t, mosq.URL(), readingsOnly, "vigil-test-restart-subscriber")
	log := newConnectionLog()
	p := startPublisher(t, mosq.URL(), log)

	consume(p, 1, 100)
	sub.waitFor(t, "readings before the outage", func(m []message) bool { return len(m) >= 100 })

	mosq.Stop()
	log.waitChanges(t, []bool{true, false})
	// Readings keep arriving for a few seconds while the broker is down;
	// Consume returns at once for each of them.
	for seq := uint64(101); seq <= 200; seq++ {
		consume(p, seq, seq)
		time.Sleep(20 * time.Millisecond)
	}
	if p.Connected() {
		t.Fatal("Connected() = true while the broker is down")
	}
	mosq.Start()
	// Readings offered while the publisher reconnects and resends.
	for seq := uint64(201); seq <= 300; seq++ {
		consume(p, seq, seq)
		time.Sleep(2 * time.Millisecond)
	}
	log.waitChanges(t, []bool{true, false, true})
	msgs := sub.waitFor(t, "every reading", func(m []message) bool { return distinctSeqs(t, m) >= 300 })
	checkOrderedAtLeastOnce(t, msgs, 1, 300)
	if _, errs := log.snapshot(); len(errs) != 0 {
		t.Errorf("publish errors: %v", errs)
	}
}

func TestPublisherEmbeddedBroker(t *testing.T) {
	b, err := broker.Start(t.Context(), "127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sub := subscribe(t, b.URL(), readingsOnly, "")
	statusSub := subscribe(t, b.URL(), "vigil/#", "")
	log := newConnectionLog()
	p := startPublisher(t, b.URL(), log)

	consume(p, 1, 200)
	msgs := sub.waitFor(t, "all readings", func(m []message) bool { return len(m) >= 200 })
	checkExactlyInOrder(t, msgs, 1, 200)
	p.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Disconnected, Since: time.Now(), LastError: "port closed"})
	statusSub.waitFor(t, "device status", hasState("vigil/clinic/room-1/ox1/status", "disconnected", false))

	statusSub.waitFor(t, "online", hasState(roomStatus, "online", false))
	late := subscribe(t, b.URL(), "vigil/clinic/room-1/#", "")
	late.waitFor(t, "retained online", hasState(roomStatus, "online", true))
	msgs = late.waitFor(t, "retained device status", hasState("vigil/clinic/room-1/ox1/status", "disconnected", true))
	for _, m := range msgs {
		if m.Topic == "vigil/clinic/room-1/ox1/status" {
			if s := decodeStatus(t, m); s.LastError == nil || *s.LastError != "port closed" {
				t.Errorf("device status %s", m.Payload)
			}
		}
		if isReading(m.Topic) {
			t.Errorf("reading %s delivered as retained", m.Payload)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	statusSub.waitFor(t, "offline", hasState(roomStatus, "offline", false))
	log.waitChanges(t, []bool{true, false})
}

// Cancelling Start's context shuts the publisher down like Close.
func TestPublisherContextCancel(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	sub := subscribe(t, mosq.URL(), "vigil/#", "")
	log := newConnectionLog()
	p, err := New(Options{URL: mosq.URL(), Site: testSite, Room: testRoom, Logger: testLogger(t),
		OnConnectionChange: log.change, OnPublishError: log.publishError})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	consume(p, 1, 10)
	sub.waitFor(t, "readings", func(m []message) bool { return len(readingsIn(m)) >= 10 })
	cancel()
	sub.waitFor(t, "offline", hasState(roomStatus, "offline", false))
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
	log.waitChanges(t, []bool{true, false})
	if err := p.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestPublisherRefusesBadReadings(t *testing.T) {
	log := newConnectionLog()
	p, err := New(Options{URL: "tcp://127.0.0.1:1", Site: testSite, Room: testRoom, Logger: testLogger(t),
		OnPublishError: log.publishError})
	if err != nil {
		t.Fatal(err)
	}
	r := reading(1)
	p.Consume(&r) // before Start
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, device := range []string{"", "a/b", "+", "#", "x\x00", "\xff"} {
		r := reading(2)
		r.Device = device
		p.Consume(&r)
	}
	r = reading(3)
	r.Metric = drivers.MetricUnknown
	p.Consume(&r)
	r.Metric = drivers.MetricID(200)
	p.Consume(&r)
	p.DeviceStatus(devstatus.Status{Device: "a/b", State: devstatus.Connected})

	_, errs := log.snapshot()
	if len(errs) != 10 {
		t.Fatalf("%d errors, want 10: %v", len(errs), errs)
	}
	if !errors.Is(errs[0], ErrNotStarted) {
		t.Errorf("before Start: %v", errs[0])
	}
	for _, err := range errs[1:7] {
		var re *ReadingError
		if !errors.As(err, &re) || !errors.Is(err, ErrTopicLevel) {
			t.Errorf("bad device: %v, want *ReadingError wrapping ErrTopicLevel", err)
		}
	}
	for _, err := range errs[7:9] {
		if !errors.Is(err, ErrUnknownMetric) {
			t.Errorf("unknown metric: %v", err)
		}
	}
	if !errors.Is(errs[9], ErrTopicLevel) {
		t.Errorf("bad device status: %v", errs[9])
	}
	// Nothing can be acknowledged (no broker): Close reports it at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var unacked *UnacknowledgedError
	if err := p.Close(ctx); !errors.As(err, &unacked) {
		t.Errorf("Close without a broker: %v, want *UnacknowledgedError", err)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Options{URL: "tcp://127.0.0.1:1883", Site: "s", Room: "r"}
	tests := []struct {
		field string
		edit  func(*Options)
	}{
		{"URL", func(o *Options) { o.URL = "" }},
		{"URL", func(o *Options) { o.URL = "embedded" }},
		{"URL", func(o *Options) { o.URL = "http://host:1883" }},
		{"URL", func(o *Options) { o.URL = "tcp://" }},
		{"URL", func(o *Options) { o.URL = "tcp://host:1883"; o.CAFile = notPEM }},
		{"Site", func(o *Options) { o.Site = "" }},
		{"Site", func(o *Options) { o.Site = "a/b" }},
		{"Room", func(o *Options) { o.Room = "+" }},
		{"TopicPrefix", func(o *Options) { o.TopicPrefix = "$SYS" }},
		{"TopicPrefix", func(o *Options) { o.TopicPrefix = "a//b" }},
		{"TopicPrefix", func(o *Options) { o.TopicPrefix = "a/#" }},
		{"KeepAlive", func(o *Options) { o.KeepAlive = time.Millisecond }},
		{"CertFile", func(o *Options) { o.URL = "ssl://host:8883"; o.CertFile = "c.pem" }},
		{"CAFile", func(o *Options) { o.URL = "ssl://host:8883"; o.CAFile = filepath.Join(dir, "missing.pem") }},
		{"CAFile", func(o *Options) { o.URL = "ssl://host:8883"; o.CAFile = notPEM }},
		{"CertFile", func(o *Options) { o.URL = "ssl://host:8883"; o.CertFile = notPEM; o.KeyFile = notPEM }},
		{"FailoverURLs", func(o *Options) { o.FailoverURLs = []string{"ssl://other:8883"} }},
		{"FailoverURLs", func(o *Options) { o.FailoverURLs = []string{"tcp://"} }},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i, tc.field), func(t *testing.T) {
			o := ok
			tc.edit(&o)
			_, err := New(o)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tc.field {
				t.Errorf("New: %v, want *OptionError for %s", err, tc.field)
			}
		})
	}

	p, err := New(Options{URL: "ssl://host:8883", Site: "s", Room: "r", TopicPrefix: "clinic/vigil", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if p.s.ClientID != "vigil-s-r" || p.roomStatusTopic != "clinic/vigil/s/r/status" || p.s.tls == nil || p.s.KeepAlive != DefaultKeepAlive {
		t.Errorf("defaults: client id %q, topic %q, tls %v, keep-alive %v", p.s.ClientID, p.roomStatusTopic, p.s.tls != nil, p.s.KeepAlive)
	}
}

// TestQuickConnectionLossesNameTheACL: a broker that drops the connection
// right after every connect (Mosquitto does when its ACL denies a publish;
// acl_test.go shows it with the real broker) gets one error naming the
// likely cause after three losses in a row; a loss after a long connection
// starts the count again.
func TestQuickConnectionLossesNameTheACL(t *testing.T) {
	var logs bytes.Buffer
	p, err := New(Options{URL: "tcp://127.0.0.1:1", Site: testSite, Room: testRoom, ClientID: "vigil-test-flap",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lost := paho.ConnectionNotificationLost{Reason: errors.New("connection reset by peer")}
	for range 2 {
		p.connectionNotification(nil, paho.ConnectionNotificationConnected{})
		p.connectionNotification(nil, lost)
	}
	if strings.Contains(logs.String(), "ACL") {
		t.Fatalf("hint after two losses:\n%s", logs.String())
	}
	p.connectionNotification(nil, paho.ConnectionNotificationConnected{})
	p.connectionNotification(nil, lost)
	want := "check that its ACL lets this agent's user publish on vigil/clinic/room-1/#"
	if strings.Count(logs.String(), want) != 1 {
		t.Fatalf("no single ACL hint after three quick losses:\n%s", logs.String())
	}
	// A connection that lasted resets the count.
	p.connectedAt.Store(time.Now().Add(-time.Minute).UnixNano())
	p.connectionNotification(nil, lost)
	if p.quickLosses.Load() != 0 {
		t.Errorf("quick losses %d after a long connection", p.quickLosses.Load())
	}
}
