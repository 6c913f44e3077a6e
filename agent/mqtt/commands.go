package mqtt

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
)

const (
	// commandQueueSize bounds the commands received but not yet handled.
	// Commands are sent by people (a button on a dashboard), a few a
	// minute; only a flood or an OnCommand that hangs fills it, and then the
	// newest are dropped rather than block paho's inbound goroutine.
	commandQueueSize = 32
	// maxCommandPayload bounds what is parsed: a command is a few tens of
	// bytes, so anything larger is refused before decoding.
	maxCommandPayload = 4096
	// maxCommandIDLen bounds the id echoed back in the result.
	maxCommandIDLen = 128
	// maxCommandErrorLen bounds the error text of a result.
	maxCommandErrorLen = 512
	// maxCommandDeviceLen and maxCommandNameLen are the lengths allowed for
	// the device level of a command topic and for a command name.
	maxCommandDeviceLen = 32
	maxCommandNameLen   = 32

	// subscribeAckLimit bounds the wait for the broker's SUBACK; past it the
	// subscription is sent again if still connected.
	subscribeAckLimit = connectTimeout + writeTimeout
	// subscribeRetryInterval spaces new subscriptions after one failed on a
	// connection that is still up.
	subscribeRetryInterval = 5 * time.Second
	// subackFailure is the SUBACK return code for a refused subscription
	// (MQTT 3.1.1 section 3.9.3).
	subackFailure = 0x80
)

// inboundCommand is a message on a command topic, as paho delivered it.
type inboundCommand struct {
	topic    string
	payload  []byte
	retained bool
}

// commandRejection is why a command was not executed. Reason is fixed text
// safe to log; detail may quote the payload and only goes in the result.
type commandRejection struct {
	reason string
	detail error
}

func (e *commandRejection) Error() string {
	if e.detail != nil {
		return e.reason + ": " + e.detail.Error()
	}
	return e.reason
}

// parsedCommand is a command payload: {"command":"nibp_start","id":"42"}.
type parsedCommand struct {
	name   string // "" when missing or invalid
	id     string
	hasID  bool
	fields map[string]json.RawMessage // the whole object, for commands with arguments
}

// parseCommand decodes a command payload. Unknown fields are ignored; keys
// are matched exactly (encoding/json's struct decoding would also accept
// "Command"). The id is returned whenever it is valid, even when the
// command is not, so the sender can match the refusal to its request.
func parseCommand(payload []byte) (parsedCommand, error) {
	var c parsedCommand
	if len(payload) > maxCommandPayload {
		return c, &commandRejection{reason: "payload larger than 4096 bytes"}
	}
	if !json.Valid(payload) {
		// Unmarshal gives the offending character and offset.
		var v any
		return c, &commandRejection{reason: "payload is not valid JSON", detail: json.Unmarshal(payload, &v)}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil { // "null" decodes to a nil map
		return c, &commandRejection{reason: "payload is not a JSON object"}
	}
	if raw, ok := fields["id"]; ok && string(raw) != "null" {
		var id string
		switch {
		case json.Unmarshal(raw, &id) != nil:
			return c, &commandRejection{reason: `"id" is not a string`}
		case len(id) > maxCommandIDLen:
			return c, &commandRejection{reason: `"id" is longer than 128 bytes`}
		}
		c.id, c.hasID = id, true
	}
	raw, ok := fields["command"]
	if !ok {
		return c, &commandRejection{reason: `no "command"`}
	}
	var name string
	if string(raw) == "null" || json.Unmarshal(raw, &name) != nil { // null would decode as ""
		return c, &commandRejection{reason: `"command" is not a string`}
	}
	if !validCommandName(name) {
		return c, &commandRejection{reason: `"command" is not 1 to 32 characters a-z or _`}
	}
	c.name, c.fields = name, fields
	return c, nil
}

// validCommandName: [a-z_]{1,32}.
func validCommandName(s string) bool {
	if len(s) == 0 || len(s) > maxCommandNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// validCommandDevice: [a-z0-9-]{1,32}, the form of a configured device id.
// Whether such a device is configured is OnCommand's decision.
func validCommandDevice(s string) bool {
	if len(s) == 0 || len(s) > maxCommandDeviceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// commandDevice extracts the device level of {prefix}/{site}/{room}/{device}/cmd.
func (p *Publisher) commandDevice(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, p.roomTopic)
	if !ok {
		return "", false
	}
	device, ok := strings.CutSuffix(rest, "/cmd")
	if !ok || !validCommandDevice(device) {
		return "", false
	}
	return device, true
}

// commandArrived runs on paho's inbound goroutine for every message on the
// command topic. With OrderMatters (paho's default, kept so commands are
// handled in arrival order) paho waits for it before reading the next
// packet, PUBACKs for readings included, so it only hands the message to
// the command goroutine and never blocks: when that goroutine is behind,
// the command is dropped, logged and counted. paho acknowledges the message
// when this returns, so a dropped command is not delivered again.
func (p *Publisher) commandArrived(_ paho.Client, m paho.Message) {
	select {
	case p.commands <- inboundCommand{topic: m.Topic(), payload: m.Payload(), retained: m.Retained()}:
	default:
		n := p.commandsDropped.Add(1)
		if ok, suppressed := p.commandLogLimit.allow(); ok {
			p.log.Warn("command queue full; command dropped",
				slog.Uint64("dropped_total", n), slog.Int("similar_not_logged", suppressed))
		}
	}
}

// unroutedMessage handles a message that matches no route. The broker only
// sends one for a subscription this client no longer makes: one kept in
// the persistent session from a run with another topic prefix, or with
// commands enabled. Returning acknowledges it; without a handler paho would
// leave it unacknowledged and the broker would resend it on every
// connection.
func (p *Publisher) unroutedMessage(_ paho.Client, m paho.Message) {
	p.log.Debug("message on an unexpected topic ignored", slog.String("topic", m.Topic()))
}

// CommandsDropped counts the commands dropped because the command queue was
// full (see Options.OnCommand).
func (p *Publisher) CommandsDropped() uint64 { return p.commandsDropped.Load() }

// requestSubscribe asks the command goroutine to subscribe; called by run
// after every (re)connect. A request already pending covers this one.
func (p *Publisher) requestSubscribe() {
	if !p.commandsEnabled() {
		return
	}
	select {
	case p.subscribeReq <- struct{}{}:
	default:
	}
}

// commandLoop is the command goroutine: it (re)subscribes to the command
// topic after every connect and handles commands one at a time, in arrival
// order. It stops when shutdown begins, after a command in progress.
//
// Subscribing after every connect is needed because the broker may have
// lost the session (restarted without persistence, or expired it); when
// the session survived, the same filter replaces the existing subscription
// (MQTT 3.1.1 section 3.8.4), so commands are never delivered twice for
// it. paho's ResumeSubs stays off: with it, paho would store the SUBSCRIBE
// in the same store as the readings (see ready).
func (p *Publisher) commandLoop() {
	defer close(p.commandsDone)
	var (
		token   paho.Token      // the subscription waiting for its SUBACK
		acked   <-chan struct{} // token.Done(), nil when none is waiting
		timer   = time.NewTimer(time.Hour)
		timerOn <-chan time.Time // timer.C while armed
	)
	timer.Stop()
	defer timer.Stop()
	subscribe := func() {
		token = p.client.Subscribe(p.commandFilter, 1, nil) // the route was added before Connect
		acked = token.Done()
		timer.Reset(subscribeAckLimit)
		timerOn = timer.C
	}
	retryLater := func() {
		if p.client.IsConnectionOpen() {
			timer.Reset(subscribeRetryInterval)
			timerOn = timer.C
		}
	}
	for {
		select {
		case <-p.closing:
			return
		case <-p.subscribeReq:
			subscribe()
		case <-acked:
			acked, timerOn = nil, nil
			timer.Stop()
			if err := token.Error(); err != nil {
				p.log.Warn("command subscription failed; retrying", slog.String("topic", p.commandFilter), slog.Any("error", err))
				retryLater()
				continue
			}
			code := byte(subackFailure)
			if st, ok := token.(*paho.SubscribeToken); ok {
				if c, ok := st.Result()[p.commandFilter]; ok {
					code = c
				}
			}
			if code == subackFailure {
				// An access rule of the broker: retrying would not help.
				p.log.Error("broker refused the command subscription; commands will not be received",
					slog.String("topic", p.commandFilter))
				continue
			}
			p.log.Info("subscribed to commands", slog.String("topic", p.commandFilter), slog.Int("qos", int(code)))
		case <-timerOn:
			timerOn = nil
			if acked != nil {
				acked = nil
				p.log.Warn("no SUBACK for the command subscription; subscribing again", slog.String("topic", p.commandFilter))
			}
			if p.client.IsConnectionOpen() {
				subscribe()
			}
		case c := <-p.commands:
			select {
			case <-p.closing:
				return // not started once shutdown has begun
			default:
			}
			p.handleCommand(c)
		}
	}
}

// handleCommand validates c, calls OnCommand and publishes the outcome.
// A command whose topic has no valid device level gets no result: there is
// no topic of the right form to answer on. Neither does an empty message.
func (p *Publisher) handleCommand(c inboundCommand) {
	device, ok := p.commandDevice(c.topic)
	if !ok {
		p.logRejected("command ignored: the device level of its topic is not [a-z0-9-]{1,32}", "", "")
		return
	}
	if len(c.payload) == 0 {
		// How a retained message is cleared: not a command, and an error
		// result would only confuse whoever cleared it.
		p.log.Debug("empty message on a command topic ignored", slog.String("device", device))
		return
	}
	cmd, err := parseCommand(c.payload)
	if err == nil && c.retained {
		// The broker replays a retained message on every subscription, so
		// it would run again after each reconnect.
		err = &commandRejection{reason: "retained command not executed: the broker replays it on every subscription; publish commands without retain"}
	}
	if err != nil {
		reason := err.Error()
		if r, ok := err.(*commandRejection); ok {
			reason = r.reason
		}
		p.logRejected("command rejected", device, reason)
		p.publishCommandResult(device, cmd, err)
		return
	}
	if device == AlarmsTopicLevel {
		err = p.alarmCommand(cmd)
	} else if device == SessionTopicLevel {
		err = p.sessionCommand(cmd)
	} else if p.s.OnCommand == nil {
		err = errors.New("device commands are not enabled")
	} else {
		err = p.s.OnCommand(device, cmd.name)
	}
	if err != nil {
		p.log.Warn("command failed", slog.String("device", device), slog.String("command", cmd.name), slog.Any("error", err))
	} else {
		p.log.Info("command done", slog.String("device", device), slog.String("command", cmd.name))
	}
	p.publishCommandResult(device, cmd, err)
}

func (p *Publisher) logRejected(msg, device, reason string) {
	ok, suppressed := p.commandLogLimit.allow()
	if !ok {
		return
	}
	attrs := []any{slog.Int("similar_not_logged", suppressed)}
	if device != "" {
		attrs = append(attrs, slog.String("device", device))
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	p.log.Warn(msg, attrs...)
}

// publishCommandResult queues the outcome of a command, QoS 1, not
// retained (a result answers one request; a retained one would be shown to
// every later subscriber as if new).
func (p *Publisher) publishCommandResult(device string, cmd parsedCommand, err error) {
	topic := p.roomTopic + device + "/cmd/result"
	errText := ""
	if err != nil {
		errText = truncateUTF8(err.Error(), maxCommandErrorLen)
		if errText == "" {
			errText = "failed" // ok=false always comes with a reason
		}
	}
	payload := appendCommandResultJSON(make([]byte, 0, 160), cmd, err == nil, errText, time.Now())
	if err := p.enqueue(outbound{topic: topic, payload: payload}, nil); err != nil {
		p.reportError(&PublishError{Topic: topic, Err: err})
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// logLimiter allows one log line per errorLogInterval and counts the rest,
// so a flood of bad commands cannot flood the log.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < errorLogInterval {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed, l.last = 0, now
	return true, n
}

// commandsStopped waits for the command goroutine; called last by shutdown.
func (p *Publisher) commandsStopped() {
	if !p.commandsEnabled() {
		return
	}
	<-p.commandsDone
}

// commandsEnabled: the publisher subscribes to command topics when it has
// device commands or alarm commands to hand them to.
func (p *Publisher) commandsEnabled() bool {
	return p.s.OnCommand != nil || p.s.OnAlarmCommand != nil || p.s.OnSessionCommand != nil
}
