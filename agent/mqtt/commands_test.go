package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

const (
	commandResults = "vigil/clinic/room-1/+/cmd/result"
	probeCommand   = "probe"
)

func cmdTopic(device string) string { return "vigil/clinic/room-1/" + device + "/cmd" }

func resultTopic(device string) string { return cmdTopic(device) + "/result" }

// commandCall is one call of OnCommand.
type commandCall struct{ Device, Command string }

// commandHandler is the tests' OnCommand: it records every call, fails for
// device "bp2", and blocks on command "block" until release is closed.
type commandHandler struct {
	mu      sync.Mutex
	calls   []commandCall
	changed chan struct{}
	entered chan struct{} // receives when a "block" command starts
	release chan struct{}
}

func newCommandHandler() *commandHandler {
	return &commandHandler{changed: make(chan struct{}, 1), entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *commandHandler) OnCommand(device, command string) error {
	h.mu.Lock()
	h.calls = append(h.calls, commandCall{device, command})
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
	switch {
	case command == "block":
		h.entered <- struct{}{}
		<-h.release
	case device == "bp2":
		return errors.New("device bp2 is not configured")
	}
	return nil
}

// commandCalls are the calls so far, probes left out.
func (h *commandHandler) commandCalls() []commandCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []commandCall
	for _, c := range h.calls {
		if c.Command != probeCommand {
			out = append(out, c)
		}
	}
	return out
}

type resultPayload struct {
	Command *string `json:"command"`
	ID      *string `json:"id"`
	OK      bool    `json:"ok"`
	Error   *string `json:"error"`
	Time    string  `json:"time"`
}

// decodeResult decodes a result and checks its exact set of fields.
func decodeResult(t *testing.T, m message) resultPayload {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(m.Payload), &fields); err != nil {
		t.Fatalf("result %q: %v", m.Payload, err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"command", "error", "id", "ok", "time"}; !slices.Equal(keys, want) {
		t.Fatalf("result %s has fields %v, want %v", m.Payload, keys, want)
	}
	var r resultPayload
	if err := json.Unmarshal([]byte(m.Payload), &r); err != nil {
		t.Fatalf("result %q: %v", m.Payload, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil || ts.IsZero() || !strings.HasSuffix(r.Time, "Z") {
		t.Fatalf("result time %q: %v", r.Time, err)
	}
	if r.OK != (r.Error == nil) {
		t.Fatalf("result %s: ok and error disagree", m.Payload)
	}
	if m.Retained {
		t.Fatalf("result %s delivered as retained", m.Payload)
	}
	return r
}

// resultFor waits for the result carrying id and returns it.
func resultFor(t *testing.T, sub *subscriber, id string) (message, resultPayload) {
	t.Helper()
	var found message
	sub.waitFor(t, "result for "+id, func(msgs []message) bool {
		for _, m := range msgs {
			var r resultPayload
			if json.Unmarshal([]byte(m.Payload), &r) == nil && r.ID != nil && *r.ID == id {
				found = m
				return true
			}
		}
		return false
	})
	return found, decodeResult(t, found)
}

// commandSender is a plain paho client that publishes commands.
type commandSender struct {
	t      *testing.T
	client paho.Client
}

func newCommandSender(t *testing.T, url string) *commandSender {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("sender connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &commandSender{t: t, client: c}
}

func (s *commandSender) publish(topic string, retained bool, payload string) {
	s.t.Helper()
	if tok := s.client.Publish(topic, 1, retained, payload); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		s.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// awaitCommands waits until the publisher is subscribed: it sends probe
// commands until one is answered, then a marker command; since commands
// are handled in order, the marker's result means every probe has been
// handled too and none can arrive later.
func awaitCommands(t *testing.T, s *commandSender, results *subscriber, round string) {
	t.Helper()
	answered := func() bool {
		for _, m := range results.messages() {
			var r resultPayload
			if json.Unmarshal([]byte(m.Payload), &r) == nil && r.ID != nil && strings.HasPrefix(*r.ID, "probe-"+round+"-") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(waitLimit)
	for i := 0; !answered(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no probe command answered within %v", waitLimit)
		}
		s.publish(cmdTopic("ox1"), false, fmt.Sprintf(`{"command":%q,"id":"probe-%s-%d"}`, probeCommand, round, i))
		time.Sleep(200 * time.Millisecond)
	}
	marker := "marker-" + round
	s.publish(cmdTopic("ox1"), false, fmt.Sprintf(`{"command":%q,"id":%q}`, probeCommand, marker))
	resultFor(t, results, marker)
}

func startCommandPublisher(t *testing.T, url string, h *commandHandler, log *connectionLog) *Publisher {
	t.Helper()
	p, err := New(Options{
		URL: url, Site: testSite, Room: testRoom, Version: "test-1.0",
		ClientID:           "vigil-test-" + strings.ReplaceAll(t.Name(), "/", "-"),
		KeepAlive:          2 * time.Second,
		Logger:             testLogger(t),
		OnConnectionChange: log.change,
		OnPublishError:     log.publishError,
		OnCommand:          h.OnCommand,
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

func TestCommandsMosquitto(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	proxy := startProxy(t, mosq.Addr())
	results := subscribe(t, mosq.URL(), commandResults, "")
	sender := newCommandSender(t, mosq.URL())

	// A retained command, left on the broker before the agent starts, is
	// replayed to the new subscription: it must not run.
	sender.publish(cmdTopic("bp1"), true, `{"command":"nibp_start","id":"stale"}`)

	h := newCommandHandler()
	log := newConnectionLog()
	p := startCommandPublisher(t, proxy.URL(), h, log)
	awaitCommands(t, sender, results, "start")

	m, r := resultFor(t, results, "stale")
	if m.Topic != resultTopic("bp1") || r.OK || !strings.Contains(*r.Error, "retained") || *r.Command != "nibp_start" {
		t.Errorf("retained command result %s %s", m.Topic, m.Payload)
	}
	sender.publish(cmdTopic("bp1"), true, "") // clear it: an empty message gets no result

	t.Run("executed", func(t *testing.T) {
		sender.publish(cmdTopic("bp1"), false, `{"command":"nibp_start","id":"a1","extra":{"x":[1,2]},"Command":"other"}`)
		m, r := resultFor(t, results, "a1")
		if m.Topic != resultTopic("bp1") || !r.OK || *r.Command != "nibp_start" {
			t.Errorf("result %s %s", m.Topic, m.Payload)
		}
		if got := h.commandCalls(); !slices.Equal(got, []commandCall{{"bp1", "nibp_start"}}) {
			t.Errorf("OnCommand calls %v", got)
		}
		// Without an id, the result carries null.
		sender.publish(cmdTopic("bp1"), false, `{"command":"nibp_stop"}`)
		msgs := results.waitFor(t, "result without id", func(msgs []message) bool {
			for _, m := range msgs {
				if strings.Contains(m.Payload, `"nibp_stop"`) {
					return true
				}
			}
			return false
		})
		for _, m := range msgs {
			if strings.Contains(m.Payload, `"nibp_stop"`) {
				if r := decodeResult(t, m); r.ID != nil || !r.OK {
					t.Errorf("result %s", m.Payload)
				}
			}
		}
	})

	t.Run("handler error", func(t *testing.T) {
		sender.publish(cmdTopic("bp2"), false, `{"command":"nibp_start","id":"e1"}`)
		m, r := resultFor(t, results, "e1")
		if m.Topic != resultTopic("bp2") || r.OK || *r.Error != "device bp2 is not configured" || *r.Command != "nibp_start" {
			t.Errorf("result %s %s", m.Topic, m.Payload)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		before := len(h.commandCalls())
		for i, tc := range []struct{ payload, id, reason string }{
			{`{"command":"nibp_start","id":"m1"`, "", "payload is not valid JSON"},
			{`["nibp_start"]`, "", "payload is not a JSON object"},
			{`null`, "", "payload is not a JSON object"},
			{`{"command":"NIBP-start","id":"m2"}`, "m2", `"command" is not 1 to 32 characters a-z or _`},
			{`{"id":"m3"}`, "m3", `no "command"`},
			{`{"command":7,"id":"m4"}`, "m4", `"command" is not a string`},
			{`{"command":"nibp_start","id":5}`, "", `"id" is not a string`},
		} {
			sender.publish(cmdTopic("ox1"), false, tc.payload)
			// Results without an id are matched by order: send a marker.
			marker := fmt.Sprintf("after-malformed-%d", i)
			sender.publish(cmdTopic("ox1"), false, fmt.Sprintf(`{"command":%q,"id":%q}`, probeCommand, marker))
			msgs := results.waitFor(t, "marker", func(msgs []message) bool {
				return slices.ContainsFunc(msgs, func(m message) bool { return strings.Contains(m.Payload, marker) })
			})
			i := slices.IndexFunc(msgs, func(m message) bool { return strings.Contains(m.Payload, marker) })
			m := msgs[i-1]
			r := decodeResult(t, m)
			if m.Topic != resultTopic("ox1") || r.OK || !strings.HasPrefix(*r.Error, tc.reason) {
				t.Errorf("payload %s: result %s %s, want error %q", tc.payload, m.Topic, m.Payload, tc.reason)
			}
			if (tc.id == "" && r.ID != nil) || (tc.id != "" && (r.ID == nil || *r.ID != tc.id)) {
				t.Errorf("payload %s: result id in %s, want %q", tc.payload, m.Payload, tc.id)
			}
			if r.Command != nil {
				t.Errorf("payload %s: result command in %s, want null", tc.payload, m.Payload)
			}
		}
		if got := h.commandCalls(); len(got) != before {
			t.Errorf("OnCommand called for malformed commands: %v", got[before:])
		}
	})

	t.Run("invalid device level", func(t *testing.T) {
		before := len(results.messages())
		for _, device := range []string{"BP1", "bp_1", strings.Repeat("a", 33)} {
			sender.publish(cmdTopic(device), false, `{"command":"nibp_start","id":"bad-device"}`)
		}
		sender.publish(cmdTopic("bp1"), false, `{"command":"nibp_start","id":"good-device"}`)
		resultFor(t, results, "good-device")
		for _, m := range results.messages()[before:] {
			if strings.Contains(m.Payload, "bad-device") {
				t.Errorf("result for an invalid device level: %s %s", m.Topic, m.Payload)
			}
		}
	})

	t.Run("queue full drops", func(t *testing.T) {
		const extra = 3
		sender.publish(cmdTopic("ox1"), false, `{"command":"block","id":"blocker"}`)
		select {
		case <-h.entered:
		case <-time.After(waitLimit):
			t.Fatal("blocking command not started")
		}
		for i := range commandQueueSize + extra {
			sender.publish(cmdTopic("ox1"), false, fmt.Sprintf(`{"command":"queued","id":"q%d"}`, i))
		}
		deadline := time.Now().Add(waitLimit)
		for p.CommandsDropped() < extra && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(h.release)
		if n := p.CommandsDropped(); n != extra {
			t.Fatalf("dropped %d commands, want %d", n, extra)
		}
		resultFor(t, results, "blocker")
		for i := range commandQueueSize {
			resultFor(t, results, fmt.Sprintf("q%d", i))
		}
		sender.publish(cmdTopic("ox1"), false, `{"command":"queued","id":"after-drop"}`)
		resultFor(t, results, "after-drop")
		for _, m := range results.messages() {
			for i := commandQueueSize; i < commandQueueSize+extra; i++ {
				if strings.Contains(m.Payload, fmt.Sprintf(`"q%d"`, i)) {
					t.Errorf("result for a dropped command: %s", m.Payload)
				}
			}
		}
	})

	// After a reconnect with the session kept, the subscription is made
	// again; it replaces the old one, so commands still arrive once each.
	t.Run("reconnect keeps one subscription", func(t *testing.T) {
		proxy.Cut()
		log.waitChanges(t, []bool{true, false, true})
		awaitCommands(t, sender, results, "reconnect")
		before := len(h.commandCalls())
		sender.publish(cmdTopic("ox1"), false, `{"command":"first","id":"d1"}`)
		sender.publish(cmdTopic("ox1"), false, `{"command":"second","id":"d2"}`)
		resultFor(t, results, "d2")
		if got := h.commandCalls()[before:]; !slices.Equal(got, []commandCall{{"ox1", "first"}, {"ox1", "second"}}) {
			t.Errorf("OnCommand calls after reconnect %v, want first and second once each", got)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, errs := log.snapshot(); len(errs) != 0 {
		t.Errorf("publish errors: %v", errs)
	}
}

// A broker restarted without persistence has forgotten the session and its
// subscription: commands only work again because the publisher subscribes
// after every connect.
func TestCommandsAfterBrokerRestart(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	h := newCommandHandler()
	log := newConnectionLog()
	startCommandPublisher(t, mosq.URL(), h, log)
	results := subscribe(t, mosq.URL(), commandResults, "")
	sender := newCommandSender(t, mosq.URL())
	awaitCommands(t, sender, results, "before")

	mosq.Stop()
	log.waitChanges(t, []bool{true, false})
	mosq.Start()
	log.waitChanges(t, []bool{true, false, true})

	// The test's own clients lost their connection and subscription too.
	results = subscribe(t, mosq.URL(), commandResults, "")
	sender = newCommandSender(t, mosq.URL())
	awaitCommands(t, sender, results, "after")
	sender.publish(cmdTopic("bp1"), false, `{"command":"nibp_start","id":"r1"}`)
	m, r := resultFor(t, results, "r1")
	if m.Topic != resultTopic("bp1") || !r.OK {
		t.Errorf("result %s %s", m.Topic, m.Payload)
	}
	if got := h.commandCalls(); !slices.Equal(got, []commandCall{{"bp1", "nibp_start"}}) {
		t.Errorf("OnCommand calls %v", got)
	}
}

// Commands sent while the agent is away are queued in its persistent
// session and delivered right after it connects again, before it has sent
// its new SUBSCRIBE; the route added before Connect handles them, and they
// are acknowledged (not delivered again to a later run).
func TestCommandsQueuedInSession(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	results := subscribe(t, mosq.URL(), commandResults, "")
	sender := newCommandSender(t, mosq.URL())

	first := newCommandHandler()
	p := startCommandPublisher(t, mosq.URL(), first, newConnectionLog())
	awaitCommands(t, sender, results, "first")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	sender.publish(cmdTopic("bp1"), false, `{"command":"nibp_start","id":"while-away"}`)

	for run, want := range [][]commandCall{{{"bp1", "nibp_start"}}, nil} {
		h := newCommandHandler()
		p := startCommandPublisher(t, mosq.URL(), h, newConnectionLog())
		round := fmt.Sprint("run", run)
		if run == 0 {
			m, r := resultFor(t, results, "while-away")
			if m.Topic != resultTopic("bp1") || !r.OK {
				t.Errorf("result %s %s", m.Topic, m.Payload)
			}
		}
		awaitCommands(t, sender, results, round)
		if got := h.commandCalls(); !slices.Equal(got, want) {
			t.Errorf("run %d: OnCommand calls %v, want %v", run, got, want)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestParseCommand(t *testing.T) {
	long := strings.Repeat("x", maxCommandIDLen+1)
	tests := []struct {
		payload string
		name    string
		id      string
		hasID   bool
		reason  string // "" = valid
	}{
		{`{"command":"nibp_start"}`, "nibp_start", "", false, ""},
		{` {"command":"nibp_start","id":"42","x":null} `, "nibp_start", "42", true, ""},
		{`{"command":"nibp_start","id":null}`, "nibp_start", "", false, ""},
		{`{"command":"` + strings.Repeat("a", 32) + `"}`, strings.Repeat("a", 32), "", false, ""},
		{`{"command":"` + strings.Repeat("a", 33) + `"}`, "", "", false, `"command" is not 1 to 32`},
		{`{"command":""}`, "", "", false, `"command" is not 1 to 32`},
		{`{"command":"nibp start"}`, "", "", false, `"command" is not 1 to 32`},
		{`{"command":"nibp_stärt"}`, "", "", false, `"command" is not 1 to 32`},
		{`{"command":"nibp_\u0000"}`, "", "", false, `"command" is not 1 to 32`},
		{`{"Command":"nibp_start"}`, "", "", false, `no "command"`},
		{`{"command":null,"id":"7"}`, "", "7", true, `"command" is not a string`},
		{`{"command":"nibp_start","id":"` + long + `"}`, "", "", false, `"id" is longer`},
		{`{"command":"nibp_start","id":{}}`, "", "", false, `"id" is not a string`},
		{`{"command":"a","command":"nibp_start"}`, "nibp_start", "", false, ""}, // last one wins, as in encoding/json
		{``, "", "", false, "payload is not valid JSON"},
		{`{"command":"nibp_start"`, "", "", false, "payload is not valid JSON"},
		{"\xff", "", "", false, "payload is not valid JSON"},
		{`[]`, "", "", false, "payload is not a JSON object"},
		{`"nibp_start"`, "", "", false, "payload is not a JSON object"},
		{`null`, "", "", false, "payload is not a JSON object"},
		{`{"command":"nibp_start","pad":"` + strings.Repeat("x", maxCommandPayload) + `"}`, "", "", false, "payload larger"},
	}
	for _, tc := range tests {
		c, err := parseCommand([]byte(tc.payload))
		if tc.reason == "" {
			if err != nil {
				t.Errorf("%.60q: %v", tc.payload, err)
			}
		} else if err == nil || !strings.HasPrefix(err.Error(), tc.reason) {
			t.Errorf("%.60q: error %v, want %q", tc.payload, err, tc.reason)
		}
		if c.name != tc.name || c.id != tc.id || c.hasID != tc.hasID {
			t.Errorf("%.60q: parsed %+v, want name %q id %q (%v)", tc.payload, c, tc.name, tc.id, tc.hasID)
		}
	}
}

func TestCommandDevice(t *testing.T) {
	p, err := New(Options{URL: "tcp://127.0.0.1:1", Site: "s", Room: "r", TopicPrefix: "clinic/vigil"})
	if err != nil {
		t.Fatal(err)
	}
	if p.commandFilter != "clinic/vigil/s/r/+/cmd" {
		t.Errorf("command filter %q", p.commandFilter)
	}
	for topic, want := range map[string]string{
		"clinic/vigil/s/r/ox-1/cmd":                            "ox-1",
		"clinic/vigil/s/r/" + strings.Repeat("9", 32) + "/cmd": strings.Repeat("9", 32),
		"clinic/vigil/s/r/" + strings.Repeat("9", 33) + "/cmd": "",
		"clinic/vigil/s/r/Ox1/cmd":                             "",
		"clinic/vigil/s/r/ox_1/cmd":                            "",
		"clinic/vigil/s/r//cmd":                                "",
		"clinic/vigil/s/r/a/b/cmd":                             "",
		"clinic/vigil/s/r/ox1/cmd/result":                      "",
		"clinic/vigil/s/r2/ox1/cmd":                            "",
		"vigil/s/r/ox1/cmd":                                    "",
	} {
		got, ok := p.commandDevice(topic)
		if got != want || ok != (want != "") {
			t.Errorf("%s: device %q %v, want %q", topic, got, ok, want)
		}
	}
}

func TestCommandResultPayload(t *testing.T) {
	at := time.Date(2025, 3, 1, 15, 30, 0, 120000000, testZone)
	for _, tc := range []struct {
		c    parsedCommand
		ok   bool
		err  string
		want string
	}{
		{parsedCommand{name: "nibp_start", id: "42", hasID: true}, true, "",
			`{"command":"nibp_start","id":"42","ok":true,"error":null,"time":"2025-03-01T10:00:00.12Z"}`},
		{parsedCommand{name: "nibp_start"}, false, `cuff "busy"`,
			`{"command":"nibp_start","id":null,"ok":false,"error":"cuff \"busy\"","time":"2025-03-01T10:00:00.12Z"}`},
		{parsedCommand{id: "a\u2028b", hasID: true}, false, "no \"command\"",
			`{"command":null,"id":"a\u2028b","ok":false,"error":"no \"command\"","time":"2025-03-01T10:00:00.12Z"}`},
	} {
		got := string(appendCommandResultJSON(nil, tc.c, tc.ok, tc.err, at))
		if got != tc.want {
			t.Errorf("\n got %s\nwant %s", got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	if got := truncateUTF8("aé", 2); got != "a" {
		t.Errorf("truncateUTF8 split a character: %q", got)
	}
	if got := truncateUTF8("abc", 5); got != "abc" {
		t.Errorf("truncateUTF8 %q", got)
	}
}

func BenchmarkParseCommand(b *testing.B) {
	payload := []byte(`{"command":"nibp_start","id":"6f1c2a"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCommand(payload); err != nil {
			b.Fatal(err)
		}
	}
}
