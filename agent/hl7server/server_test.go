package hl7server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

const comenSender, comenControlID = "KC261551373G", "202506100151270003"

// Every single-message capture of the hl7 package, each sent on its own
// connection to one listener that serves all their senders, reaches exactly
// its own device with the expected readings, and is answered AA with its
// control id.
func TestCapturesReachTheirDevice(t *testing.T) {
	names := []string{"comen-nc-series", "mindray-cuff-codes", "edan-ehc", "northern-no-value", "philips-mdil-kpa"}
	senders := map[string]string{}
	inputs := map[string][]byte{}
	goldens := map[string]golden{}
	for _, n := range names {
		raw, g := loadCapture(t, n)
		if len(g.Messages) != 1 || g.Messages[0].Sender == "" {
			t.Fatalf("%s: want one accepted message, golden has %+v", n, g.Messages)
		}
		senders[n] = g.Messages[0].Sender
		inputs[n], goldens[n] = raw, g
	}
	h := start(t, senders, nil)

	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			m := connect(t, h.srv.Addr())
			m.send(inputs[n])
			m.mustACK("AA", goldens[n].Messages[0].ControlID)
			sink := h.sinks[n]
			want := goldens[n].Readings
			if got := sink.views(); !reflect.DeepEqual(got, want) {
				t.Fatalf("readings\n got %v\nwant %v", got, want)
			}
			// Readings first, then the message's one frame result.
			ev := sink.eventList()
			if len(ev) != len(want)+1 || ev[len(ev)-1] != "f:ok" {
				t.Fatalf("sink events %v", ev)
			}
			for _, r := range sink.readings {
				if r.Received.IsZero() || r.Device != "" || r.Seq != 0 {
					t.Fatalf("reading %+v: Received is the server's, Device and Seq the pipeline's", r)
				}
			}
		})
	}
	for id, s := range h.sinks {
		if got, want := s.readingCount(), len(goldens[id].Readings); got != want {
			t.Errorf("device %s has %d readings, want %d (a message reached the wrong device?)", id, got, want)
		}
	}
	connected := map[string]bool{}
	for _, st := range h.statusList() {
		if st.connected {
			connected[st.device] = true
		}
	}
	if len(connected) != len(names) {
		t.Errorf("OnStatus connected for %v, want every device", connected)
	}
	if codes := h.unknownCodes(); !slices.Contains(codes, "MDC:150344") || !slices.Contains(codes, "EHC:393218") {
		t.Errorf("unknown codes %v: want the Comen temperature and Edan's 393218", codes)
	}
	if r := h.rejections(); len(r) != 0 {
		t.Errorf("rejections %v for good messages", r)
	}
}

// The hl7 package's mixed stream (garbage, cut blocks, a message without
// MSH, an ADT, three senders) on one connection: each sender's readings
// reach its device, refused messages get AE/AR, framing problems no ACK.
func TestMixedStreamOnOneConnection(t *testing.T) {
	raw, g := loadCapture(t, "mixed-stream")
	senders := map[string]string{}
	perSender := map[string][]goldenReading{}
	var wantACKs []string
	wantRejected := map[string]int{}
	next := 0
	for _, msg := range g.Messages {
		switch {
		case msg.Error == "":
			senders["dev-"+msg.Sender] = msg.Sender
			perSender[msg.Sender] = append(perSender[msg.Sender], g.Readings[next:next+msg.Readings]...)
			next += msg.Readings
			wantACKs = append(wantACKs, "AA "+msg.ControlID)
		case strings.Contains(msg.Error, "MLLP"):
			wantRejected[RejectFraming]++
		case strings.Contains(msg.Error, "unsupported"):
			wantRejected[RejectUnsupported]++
			wantACKs = append(wantACKs, "AR "+msg.ControlID)
		default:
			wantRejected[RejectParseError]++
			wantACKs = append(wantACKs, "AE "+msg.ControlID)
		}
	}
	if len(senders) != 3 {
		t.Fatalf("mixed-stream should name 3 senders, has %v", senders)
	}
	h := start(t, senders, nil)
	m := connect(t, h.srv.Addr())
	m.send(raw)
	var got []string
	for range wantACKs {
		a, err := m.nextACK()
		if err != nil {
			t.Fatalf("after ACKs %v: %v", got, err)
		}
		got = append(got, a.code+" "+a.controlID)
	}
	if !reflect.DeepEqual(got, wantACKs) {
		t.Fatalf("ACKs %v, want %v", got, wantACKs)
	}
	for sender, want := range perSender {
		if got := h.sinks["dev-"+sender].views(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s readings\n got %v\nwant %v", sender, got, want)
		}
	}
	eventually(t, "rejections counted", func() bool { return reflect.DeepEqual(h.rejections(), wantRejected) })
	// The connection spoke for the Comen monitor alone when the no-MSH
	// message, the ADT and the garbage between them came: those are its
	// bad frames. After BED-3 the connection is shared and nothing more is
	// attributed.
	if n := h.sinks["dev-"+comenSender].frameCount(drivers.FrameMalformed); n != 3 {
		t.Errorf("Comen device has %d malformed frames, want 3", n)
	}
	for id, s := range h.sinks {
		if id != "dev-"+comenSender && s.frameCount(drivers.FrameMalformed) != 0 {
			t.Errorf("%s has malformed frames it cannot own", id)
		}
	}
}

func TestUnknownSenderGetsAE(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": "SOMEONE-ELSE", "monitor-2": "BED-12"}, nil)
	m := connect(t, h.srv.Addr())
	m.send(raw)
	a := m.mustACK("AE", comenControlID)
	if !strings.Contains(a.text, comenSender) {
		t.Errorf("AE text %q does not name the unknown sender", a.text)
	}
	if !strings.Contains(a.raw, "\rERR|") {
		t.Errorf("AE without an ERR segment: %q", a.raw)
	}
	eventually(t, "rejection counted", func() bool { return h.rejections()[RejectUnknownSender] == 1 })
	for id, s := range h.sinks {
		if ev := s.eventList(); len(ev) != 0 {
			t.Errorf("%s got %v from an unknown sender", id, ev)
		}
	}
	if st := h.statusList(); len(st) != 0 {
		t.Errorf("status changes %v for an unknown sender", st)
	}
	if u := h.unknownCodes(); len(u) != 0 {
		t.Errorf("unknown codes %v counted from a refused message", u)
	}
	if !strings.Contains(h.logs.String(), comenSender) {
		t.Errorf("the unknown sender is not logged: %s", h.logs)
	}
}

func TestGarbageThenValidMessage(t *testing.T) {
	raw, g := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	m := connect(t, h.srv.Addr())
	garbage := make([]byte, 300)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
		if garbage[i] == 0x0B {
			garbage[i] = 'x' // a start byte would open a block the message then cuts short
		}
	}
	m.send(append(garbage, raw...))
	m.mustACK("AA", comenControlID)
	if got := h.sinks["monitor-1"].views(); !reflect.DeepEqual(got, g.Readings) {
		t.Fatalf("readings after garbage\n got %v\nwant %v", got, g.Readings)
	}
	eventually(t, "garbage counted", func() bool { return h.rejections()[RejectFraming] == 1 })
}

func TestMessageSplitAcrossManyWrites(t *testing.T) {
	raw, g := loadCapture(t, "mindray-cuff-codes")
	h := start(t, map[string]string{"bed-12": "BED-12"}, nil)
	m := connect(t, h.srv.Addr())
	for p := raw; len(p) > 0; {
		n := min(len(p), 7)
		m.send(p[:n])
		p = p[n:]
		time.Sleep(time.Millisecond) // let the segments arrive as separate reads
	}
	m.mustACK("AA", "77001")
	if got := h.sinks["bed-12"].views(); !reflect.DeepEqual(got, g.Readings) {
		t.Fatalf("readings\n got %v\nwant %v", got, g.Readings)
	}
}

// A message that asks for no ACK (MSH-15/16 NE) gets none; the next one
// is answered.
func TestNoACKWhenTheMessageAsksForNone(t *testing.T) {
	raw, g := loadCapture(t, "comen-nc-series")
	quiet := bytes.Replace(raw, []byte("|P|2.6||||||UNICODE"), []byte("|P|2.6|||NE|NE||UNICODE"), 1)
	if bytes.Equal(quiet, raw) {
		t.Fatal("could not set MSH-15/16")
	}
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	m := connect(t, h.srv.Addr())
	m.send(quiet)
	m.send(withControlID(t, raw, comenControlID, "SECOND"))
	m.mustACK("AA", "SECOND")
	if got := h.sinks["monitor-1"].readingCount(); got != 2*len(g.Readings) {
		t.Fatalf("%d readings, want both messages' %d", got, 2*len(g.Readings))
	}
}

// A device stays connected while any connection that delivered its
// messages is open; the last one closing reports it disconnected.
func TestDisconnectedWhenItsLastConnectionCloses(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	first := connect(t, h.srv.Addr())
	first.send(raw)
	first.mustACK("AA", comenControlID)
	second := connect(t, h.srv.Addr())
	second.send(raw)
	second.mustACK("AA", comenControlID)
	if st := h.statusList(); !reflect.DeepEqual(st, []statusEvent{{"monitor-1", true, ""}}) {
		t.Fatalf("statuses %v, want one connected", st)
	}

	_ = first.Close()
	// The second connection still works, and the device is still
	// connected once the server has dealt with the first close.
	second.send(raw)
	second.mustACK("AA", comenControlID)
	eventually(t, "the first connection's end logged", func() bool {
		return strings.Contains(h.logs.String(), reasonClosed)
	})
	if st := h.statusList(); len(st) != 1 {
		t.Fatalf("statuses %v after closing one of two connections", st)
	}

	_ = second.Close()
	eventually(t, "disconnected", func() bool { return len(h.statusList()) == 2 })
	want := []statusEvent{{"monitor-1", true, ""}, {"monitor-1", false, reasonClosed}}
	if st := h.statusList(); !reflect.DeepEqual(st, want) {
		t.Fatalf("statuses %v, want %v", st, want)
	}
}

// Several connections sending for one device: its sink never sees two
// goroutines at once, and gets every reading.
func TestSinkCallsSerializedPerDevice(t *testing.T) {
	raw, g := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	const conns, messages = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		m := connect(t, h.srv.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range messages {
				id := fmt.Sprintf("C%dM%d", c, i)
				if _, err := m.Write(withControlID(t, raw, comenControlID, id)); err != nil {
					errs <- err
					return
				}
				a, err := m.nextACK()
				if err != nil || a.code != "AA" || a.controlID != id {
					errs <- fmt.Errorf("ACK %+v, %v for %s", a, err, id)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := h.sinks["monitor-1"]
	if got, want := s.readingCount(), conns*messages*len(g.Readings); got != want {
		t.Errorf("%d readings, want %d", got, want)
	}
	if s.frameCount(drivers.FrameOK) != conns*messages {
		t.Errorf("%d OK frames, want %d", s.frameCount(drivers.FrameOK), conns*messages)
	}
	if s.overlap.Load() {
		t.Error("two goroutines were inside the device's sink at once")
	}
}

func TestCancelClosesEverything(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	m := connect(t, h.srv.Addr())
	m.send(raw)
	m.mustACK("AA", comenControlID)
	idle := connect(t, h.srv.Addr()) // never sends
	// A third connection that has started a message and not finished it.
	partial := connect(t, h.srv.Addr())
	partial.send(raw[:len(raw)/2])
	eventually(t, "three connections open", func() bool { return h.srv.active.Load() == 3 })

	h.stop()
	for name, c := range map[string]*monitor{"talking": m, "idle": idle, "partial": partial} {
		if !c.closedByServer() {
			t.Errorf("%s connection still open after Serve returned", name)
		}
	}
	want := []statusEvent{{"monitor-1", true, ""}, {"monitor-1", false, reasonStopping}}
	if st := h.statusList(); !reflect.DeepEqual(st, want) {
		t.Errorf("statuses %v, want %v", st, want)
	}
	if c, err := net.DialTimeout("tcp", h.srv.Addr(), waitLimit); err == nil {
		_ = c.Close()
		t.Error("the listener still accepts after Serve returned")
	}
}

func TestMaxConnsEnforced(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, func(o *Options) { o.MaxConns = 2 })
	a := connect(t, h.srv.Addr())
	a.send(raw)
	a.mustACK("AA", comenControlID)
	b := connect(t, h.srv.Addr())
	b.send(raw)
	b.mustACK("AA", comenControlID)

	extra := connect(t, h.srv.Addr())
	extra.send(raw) // may fail or not: the server closes it unread
	if !extra.closedByServer() {
		t.Fatal("a third connection was kept with MaxConns 2")
	}
	if got := h.sinks["monitor-1"].readingCount(); got != 12 {
		t.Errorf("%d readings: the refused connection's message was read", got)
	}
	eventually(t, "refusal logged", func() bool { return strings.Contains(h.logs.String(), "too many connections") })

	// Closing one makes room again.
	_ = a.Close()
	eventually(t, "a free slot", func() bool { return h.srv.active.Load() == 1 })
	c := connect(t, h.srv.Addr())
	c.send(raw)
	c.mustACK("AA", comenControlID)
}

func TestIdleConnectionClosed(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	const idle = 200 * time.Millisecond
	h := start(t, map[string]string{"monitor-1": comenSender}, func(o *Options) { o.IdleTimeout = idle })
	m := connect(t, h.srv.Addr())
	m.send(raw)
	m.mustACK("AA", comenControlID)
	if !m.closedByServer() {
		t.Fatal("idle connection not closed")
	}
	eventually(t, "disconnected", func() bool { return len(h.statusList()) == 2 })
	if st := h.statusList()[1]; st.connected || st.reason != "no data for 200ms" {
		t.Fatalf("status %+v", st)
	}
}

func TestListenRefusesBadOptions(t *testing.T) {
	sink := &recordingSink{}
	cases := map[string]Options{
		"no listen":        {Devices: []Device{{ID: "a", Sender: "A", Sink: sink}}},
		"no devices":       {Listen: "127.0.0.1:0"},
		"no sender":        {Listen: "127.0.0.1:0", Devices: []Device{{ID: "a", Sink: sink}}},
		"no sink":          {Listen: "127.0.0.1:0", Devices: []Device{{ID: "a", Sender: "A"}}},
		"no id":            {Listen: "127.0.0.1:0", Devices: []Device{{Sender: "A", Sink: sink}}},
		"duplicate sender": {Listen: "127.0.0.1:0", Devices: []Device{{ID: "a", Sender: "A", Sink: sink}, {ID: "b", Sender: "A", Sink: sink}}},
		"duplicate id":     {Listen: "127.0.0.1:0", Devices: []Device{{ID: "a", Sender: "A", Sink: sink}, {ID: "a", Sender: "B", Sink: sink}}},
		"negative max":     {Listen: "127.0.0.1:0", MaxConns: -1, Devices: []Device{{ID: "a", Sender: "A", Sink: sink}}},
	}
	for name, o := range cases {
		if s, err := Listen(o); !errors.Is(err, ErrOptions) {
			if s != nil {
				_ = s.Close()
			}
			t.Errorf("%s: err %v, want ErrOptions", name, err)
		}
	}

	taken, err := Listen(Options{Listen: "127.0.0.1:0", Devices: []Device{{ID: "a", Sender: "A", Sink: sink}}})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if s, err := Listen(Options{Listen: taken.Addr(), Devices: []Device{{ID: "b", Sender: "B", Sink: sink}}}); !errors.Is(err, syscall.EADDRINUSE) {
		if s != nil {
			_ = s.Close()
		}
		t.Errorf("second Listen on %s: %v, want address in use", taken.Addr(), err)
	}
	// Close releases the port of a server never served, and Serve then
	// refuses to run.
	addr := taken.Addr()
	if err := taken.Close(); err != nil {
		t.Fatal(err)
	}
	if err := taken.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	again, err := Listen(Options{Listen: addr, Devices: []Device{{ID: "a", Sender: "A", Sink: sink}}})
	if err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	_ = again.Close()
}

// Close while Serve runs ends it with ErrServerClosed and closes the
// connections.
func TestCloseWhileServing(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	m := connect(t, h.srv.Addr())
	m.send(raw)
	m.mustACK("AA", comenControlID)
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.served:
		close(h.served)
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Serve did not return after Close")
	}
	if !m.closedByServer() {
		t.Error("connection open after Close")
	}
}

// No patient field reaches a log line or an ACK, whatever happens to the
// message: the worked example with a distinctive PID, an NK1 and a text
// OBX, accepted, from an unknown sender, of another type, malformed.
func TestNoPatientDataInLogsOrACKs(t *testing.T) {
	raw, _ := loadCapture(t, "comen-nc-series")
	pid := []byte("PID|||10006||lee|||M||Unknown\r")
	if !bytes.Contains(raw, pid) {
		t.Fatal("capture changed: no PID")
	}
	secrets := []string{"PAT-4711", "Zwiebelfisch", "Hieronymus", "Musterstrasse"}
	raw = bytes.Replace(raw, pid, []byte("PID|||PAT-4711^^^HOSP||Zwiebelfisch^Hieronymus|||M||Musterstrasse 5\r"+
		"NK1|1|Zwiebelfisch^Hieronymus\r"), 1)
	raw = bytes.Replace(raw, []byte("\x1c\r"), []byte("OBX||ST|99999^NOTE^99X|1|Hieronymus PAT-4711|||||F\r\x1c\r"), 1)

	h := start(t, map[string]string{"monitor-1": comenSender}, nil)
	m := connect(t, h.srv.Addr())
	var acks []string
	for _, msg := range [][]byte{
		raw,
		bytes.Replace(raw, []byte(comenSender), []byte("STRANGER"), 1),              // unknown sender
		bytes.Replace(raw, []byte("ORU^R01^ORU_R01"), []byte("ADT^A01^ADT_A01"), 1), // unsupported
		bytes.Replace(raw, []byte("OBR||||"), []byte("obr||||"), 1),                 // malformed segment
	} {
		m.send(msg)
		a, err := m.nextACK()
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a.code+" "+a.raw)
	}
	if codes := h.unknownCodes(); !slices.Contains(codes, "99X:99999") {
		t.Fatalf("the text OBX was not reported as unknown: %v", codes)
	}
	_ = m.Close()
	eventually(t, "connection end logged", func() bool { return strings.Contains(h.logs.String(), reasonClosed) })
	out := h.logs.String() + strings.Join(acks, "\n")
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("%q found in logs or ACKs:\n%s", secret, out)
		}
	}
	if !strings.HasPrefix(acks[0], "AA") || !strings.HasPrefix(acks[1], "AE") || !strings.HasPrefix(acks[2], "AR") || !strings.HasPrefix(acks[3], "AE") {
		t.Errorf("ACKs %v", acks)
	}
}
