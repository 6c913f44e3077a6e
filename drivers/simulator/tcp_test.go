package simulator

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/hl7"
)

// hl7Agent is the agent's side in these tests: it accepts connections,
// decodes with the hl7 package and answers every message with ack.
type hl7Agent struct {
	t    *testing.T
	ln   net.Listener
	ack  hl7.AckCode
	wg   sync.WaitGroup
	stop chan struct{}
	// dropAfter closes each connection after that many messages; 0 never.
	dropAfter int

	mu       sync.Mutex
	conns    []net.Conn
	messages []agentMessage
	ended    []int // connections the sender closed (EOF), in order
	refused  int   // blocks or bytes the decoder could not read
}

type agentMessage struct {
	conn int // 0-based accept order
	msg  *hl7.Message
}

func newAgent(t *testing.T, addr string, ack hl7.AckCode, dropAfter int) *hl7Agent {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &hl7Agent{t: t, ln: ln, ack: ack, dropAfter: dropAfter, stop: make(chan struct{})}
	a.wg.Add(1)
	go a.accept()
	t.Cleanup(a.close)
	return a
}

func (a *hl7Agent) addr() string { return a.ln.Addr().String() }

func (a *hl7Agent) accept() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.mu.Lock()
		idx := len(a.conns)
		a.conns = append(a.conns, c)
		a.mu.Unlock()
		a.wg.Add(1)
		go a.serve(idx, c)
	}
}

func (a *hl7Agent) serve(idx int, c net.Conn) {
	defer a.wg.Done()
	defer c.Close()
	dec := hl7.NewDecoder(hl7.Config{})
	buf := make([]byte, 4096)
	got := 0
	for {
		n, err := c.Read(buf)
		var replies []byte
		dec.FeedMessages(buf[:n], time.Now(), func(m *hl7.Message, err error) {
			if err != nil {
				a.mu.Lock()
				a.refused++
				a.mu.Unlock()
				return
			}
			a.mu.Lock()
			a.messages = append(a.messages, agentMessage{idx, m})
			a.mu.Unlock()
			replies = append(replies, hl7.ACK(m, a.ack, "", time.Now())...)
			got++
		})
		if len(replies) > 0 {
			if _, err := c.Write(replies); err != nil {
				return
			}
		}
		if a.dropAfter > 0 && got >= a.dropAfter {
			return
		}
		if err != nil {
			select {
			case <-a.stop:
			default:
				a.mu.Lock()
				a.ended = append(a.ended, idx)
				a.mu.Unlock()
			}
			return
		}
	}
}

func (a *hl7Agent) close() {
	select {
	case <-a.stop:
		return
	default:
	}
	close(a.stop)
	_ = a.ln.Close()
	a.mu.Lock()
	for _, c := range a.conns {
		_ = c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

func (a *hl7Agent) snapshot() (msgs []agentMessage, conns int, ended []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]agentMessage(nil), a.messages...), len(a.conns), append([]int(nil), a.ended...)
}

func (a *hl7Agent) refusals() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused
}

func hl7Driver(t *testing.T) *drivers.Driver {
	t.Helper()
	drv, ok := drivers.Lookup(hl7.Name)
	if !ok {
		t.Fatal("hl7-mllp is not registered")
	}
	return drv
}

func hl7Sender(t *testing.T, addr string, s *Scenario, rate float64) *TCPSender {
	t.Helper()
	snd, err := NewTCPSender(TCPOptions{
		Driver:        hl7Driver(t),
		DriverOptions: drivers.Options{"listen": "0.0.0.0:2575", "sender": "SIM-1"},
		Scenario:      s,
		Rate:          rate,
		Addr:          addr,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

// runSender starts Run and returns a function that cancels it and checks
// it returned nil.
func runSender(t *testing.T, s *TCPSender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// values is a message's readings by metric; only valid ones.
func values(m *hl7.Message) map[drivers.MetricID]float64 {
	out := map[drivers.MetricID]float64{}
	for _, r := range m.Readings {
		if r.Valid {
			out[r.Metric] = r.Value
		}
	}
	return out
}

func sameValues(a, b map[drivers.MetricID]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestTCPSenderFollowsTheScenario(t *testing.T) {
	calm := map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72, drivers.RespirationRate: 14}
	desat := map[drivers.MetricID]float64{drivers.SpO2: 86, drivers.PulseRate: 104, drivers.RespirationRate: 9,
		drivers.NIBPSystolic: 142, drivers.NIBPDiastolic: 91, drivers.NIBPMean: 108}
	s := &Scenario{Name: "two-steps", Steps: []Step{
		{Name: "calm", Duration: 500 * time.Millisecond, Values: calm},
		{Name: "sensor off", Duration: 300 * time.Millisecond, Flags: drivers.FlagSensorOff},
		{Name: "desaturating", Duration: 500 * time.Millisecond, Values: desat},
	}}
	agent := newAgent(t, "127.0.0.1:0", hl7.AA, 0)
	snd := hl7Sender(t, agent.addr(), s, 20)
	// The scenario does not loop: Run returns when it ends.
	if err := snd.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := snd.Stats()
	if st.Frames < 10 || st.Discarded != 0 {
		t.Fatalf("stats %+v: want every frame sent over one connection", st)
	}
	var msgs []agentMessage
	eventually(t, "every frame at the agent", func() bool {
		msgs, _, _ = agent.snapshot()
		return uint64(len(msgs)) == st.Frames
	})
	// calm (while step 1), then empty SpO2/pulse (sensor off), then desat:
	// in that order, each phase present, and nothing else.
	phase := 0
	seen := [3]int{}
	for i, am := range msgs {
		m := am.msg
		if m.Sender != "SIM-1" || am.conn != 0 {
			t.Fatalf("message %d from %q on connection %d", i, m.Sender, am.conn)
		}
		v := values(m)
		p := -1
		switch {
		case sameValues(v, calm):
			p = 0
		case len(v) == 0 && len(m.Readings) == 2: // SpO2 and pulse sent empty
			p = 1
		case sameValues(v, desat):
			p = 2
		default:
			t.Fatalf("message %d carries %v: not a scenario step's values", i, v)
		}
		if p < phase {
			t.Fatalf("message %d is step %d after step %d", i, p, phase)
		}
		phase = p
		seen[p]++
	}
	for p, n := range seen {
		if n == 0 {
			t.Errorf("no message from step %d (%v)", p+1, seen)
		}
	}
	if n := agent.refusals(); n != 0 {
		t.Errorf("the agent could not read %d blocks", n)
	}
	if msgs[0].msg.ControlID[len(msgs[0].msg.ControlID)-4:] != "0001" {
		t.Errorf("first control id %q: the counter should start at the first frame", msgs[0].msg.ControlID)
	}
}

func TestTCPSenderCountsACKs(t *testing.T) {
	for _, code := range []hl7.AckCode{hl7.AA, hl7.AE, hl7.AR} {
		t.Run(string(code), func(t *testing.T) {
			agent := newAgent(t, "127.0.0.1:0", code, 0)
			snd := hl7Sender(t, agent.addr(), steady(true, time.Minute), 50)
			stop := runSender(t, snd)
			eventually(t, "five ACKs", func() bool {
				aa, ae, ar := snd.Acks()
				return aa+ae+ar >= 5
			})
			stop()
			aa, ae, ar := snd.Acks()
			got := map[hl7.AckCode]int{hl7.AA: aa, hl7.AE: ae, hl7.AR: ar}
			for c, n := range got {
				if (c == code) != (n > 0) {
					t.Errorf("Acks() = %v with the agent answering %s", got, code)
				}
			}
		})
	}
}

// Started before the agent listens, the sender keeps trying and delivers
// once it does.
func TestTCPSenderWaitsForTheAgent(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	_ = free.Close()
	snd := hl7Sender(t, addr, steady(true, time.Minute), 20)
	runSender(t, snd)
	eventually(t, "frames discarded while nobody listens", func() bool { return snd.Stats().Discarded > 0 })
	if snd.Stats().Frames != 0 {
		t.Fatalf("frames sent with no agent: %+v", snd.Stats())
	}
	agent := newAgent(t, addr, hl7.AA, 0)
	eventually(t, "messages at the agent", func() bool {
		msgs, _, _ := agent.snapshot()
		return len(msgs) >= 3
	})
	eventually(t, "ACKs", func() bool { aa, _, _ := snd.Acks(); return aa >= 3 })
}

// The agent closing the connection (a restart) makes the sender connect
// again.
func TestTCPSenderReconnectsAfterTheAgentDropsIt(t *testing.T) {
	agent := newAgent(t, "127.0.0.1:0", hl7.AA, 3)
	snd := hl7Sender(t, agent.addr(), steady(true, time.Minute), 50)
	runSender(t, snd)
	eventually(t, "messages on three connections", func() bool {
		msgs, _, _ := agent.snapshot()
		on := map[int]bool{}
		for _, m := range msgs {
			on[m.conn] = true
		}
		return len(on) >= 3
	})
}

// An unplug step closes the connection; the next step connects again.
func TestTCPSenderUnplugClosesTheConnection(t *testing.T) {
	vals := map[drivers.MetricID]float64{drivers.SpO2: 95, drivers.PulseRate: 80}
	s := &Scenario{Name: "unplug", Steps: []Step{
		{Name: "on", Duration: 400 * time.Millisecond, Values: vals},
		{Name: "unplugged", Duration: 400 * time.Millisecond, Unplug: true},
		{Name: "on again", Duration: 600 * time.Millisecond},
	}}
	agent := newAgent(t, "127.0.0.1:0", hl7.AA, 0)
	snd := hl7Sender(t, agent.addr(), s, 20)
	if err := snd.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := snd.Stats(); st.Unplugs != 1 || st.Frames == 0 {
		t.Fatalf("stats %+v", st)
	}
	var msgs []agentMessage
	var ended []int
	var conns int
	eventually(t, "both connections over", func() bool {
		msgs, conns, ended = agent.snapshot()
		return len(ended) == 2
	})
	if conns != 2 || ended[0] != 0 {
		t.Fatalf("%d connections, ended in order %v: want the first closed by the unplug, then a second", conns, ended)
	}
	count := [2]int{}
	for i, m := range msgs {
		if i > 0 && m.conn < msgs[i-1].conn {
			t.Fatalf("message %d on connection %d after one on %d", i, m.conn, msgs[i-1].conn)
		}
		if !sameValues(values(m.msg), vals) {
			t.Fatalf("message %d values %v", i, values(m.msg))
		}
		count[m.conn]++
	}
	if count[0] == 0 || count[1] == 0 {
		t.Fatalf("messages per connection %v: want some before and after the unplug", count)
	}
}

func TestTCPSenderRunOnceAtATime(t *testing.T) {
	agent := newAgent(t, "127.0.0.1:0", hl7.AA, 0)
	snd := hl7Sender(t, agent.addr(), steady(true, time.Minute), 20)
	stop := runSender(t, snd)
	eventually(t, "first Run sending", func() bool { return snd.Stats().Frames > 0 })
	if err := snd.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
	stop()
	eventually(t, "connection closed after Run returned", func() bool {
		_, _, ended := agent.snapshot()
		return len(ended) == 1
	})
}

// Garbage after each frame reaches the agent as bytes outside a block; it
// resynchronises and reads every message.
func TestTCPSenderGarbageBetweenMessages(t *testing.T) {
	vals := map[drivers.MetricID]float64{drivers.SpO2: 93, drivers.PulseRate: 99}
	s := &Scenario{Name: "noisy line", Steps: []Step{
		{Name: "noisy", Duration: 500 * time.Millisecond, Values: vals, Garbage: 40},
	}}
	agent := newAgent(t, "127.0.0.1:0", hl7.AA, 0)
	snd := hl7Sender(t, agent.addr(), s, 20)
	if err := snd.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	frames := snd.Stats().Frames
	var msgs []agentMessage
	eventually(t, "every frame at the agent", func() bool {
		msgs, _, _ = agent.snapshot()
		return uint64(len(msgs)) == frames
	})
	for i, m := range msgs {
		if !sameValues(values(m.msg), vals) {
			t.Fatalf("message %d values %v", i, values(m.msg))
		}
	}
	if agent.refusals() == 0 {
		t.Error("the garbage never reached the agent")
	}
}

func TestNewTCPSenderRejectsBadOptions(t *testing.T) {
	good := TCPOptions{
		Driver:        hl7Driver(t),
		DriverOptions: drivers.Options{"listen": "0.0.0.0:2575", "sender": "SIM-1"},
		Scenario:      steady(true, time.Second),
		Addr:          "127.0.0.1:2575",
	}
	if _, err := NewTCPSender(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	cases := map[string]func(o *TCPOptions){
		"no driver":         func(o *TCPOptions) { o.Driver = nil },
		"no scenario":       func(o *TCPOptions) { o.Scenario = nil },
		"bad scenario":      func(o *TCPOptions) { o.Scenario = &Scenario{Name: "empty"} },
		"negative rate":     func(o *TCPOptions) { o.Rate = -1 },
		"bad speed":         func(o *TCPOptions) { o.Speed = MaxSpeed + 1 },
		"no address":        func(o *TCPOptions) { o.Addr = "" },
		"address sans port": func(o *TCPOptions) { o.Addr = "localhost" },
		"bad driver option": func(o *TCPOptions) { o.DriverOptions = drivers.Options{"listen": "0.0.0.0:2575"} },
	}
	for name, mutate := range cases {
		o := good
		mutate(&o)
		if _, err := NewTCPSender(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o := good
	o.Driver = lineDriver(time.Second)
	if _, err := NewTCPSender(o); !errors.Is(err, ErrNotMLLP) {
		t.Errorf("line protocol over TCP: %v, want ErrNotMLLP", err)
	}
	o.Driver = &drivers.Driver{Name: "no-encoder"}
	if _, err := NewTCPSender(o); !errors.Is(err, ErrNoEncoder) {
		t.Errorf("driver without encoder: %v, want ErrNoEncoder", err)
	}
}

func TestMSACode(t *testing.T) {
	cases := map[string]string{
		"MSH|^~\\&|VIGIL||M|F|20240101||ACK^R01^ACK|1|P|2.6\rMSA|AA|1\r":                   "AA",
		"MSH|^~\\&|VIGIL||M|F|20240101||ACK|1|P|2.6\rMSA|AE|1|unknown sender\rERR|||207\r": "AE",
		"MSH#^~\\&#VIGIL\rMSA#AR#7\r":                                                      "AR", // MSH-1 declares the separator
		"MSH|^~\\&|VIGIL\r\nMSA|AA|1\r":                                                    "AA",
		"MSH|^~\\&|VIGIL\rPID|AA\r":                                                        "",
		"MSA|AA|1\r":                                                                       "",
		"":                                                                                 "",
	}
	for in, want := range cases {
		if got := msaCode([]byte(in)); got != want {
			t.Errorf("msaCode(%q) = %q, want %q", in, got, want)
		}
	}
	var sc ackScanner
	var codes []string
	stream := []byte("junk\x0bMSH|^~\\&|V\rMSA|AA|1\r\x1c\r\x0bMSH|^~\\&|V\rMSA|AE|2\r\x1c\r")
	for i := range stream { // byte by byte: blocks span reads
		sc.feed(stream[i:i+1], func(c string) { codes = append(codes, c) })
	}
	if len(codes) != 2 || codes[0] != "AA" || codes[1] != "AE" {
		t.Errorf("scanned codes %v", codes)
	}
}
