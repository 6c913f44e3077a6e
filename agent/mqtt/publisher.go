// Package mqtt publishes readings, device states and the agent's own state to
// an MQTT broker, and receives commands for the devices.
//
// Topics (prefix defaults to "vigil"):
//
//	{prefix}/{site}/{room}/{device}/{metric}      one message per reading, QoS 1, not retained
//	{prefix}/{site}/{room}/status                 retained: online, offline (also the Last Will)
//	{prefix}/{site}/{room}/{device}/status        retained: state (connected, disconnected,
//	                                              silent) and conditions
//	{prefix}/{site}/{room}/{device}/cmd           subscribed, QoS 1: commands to the agent
//	{prefix}/{site}/{room}/{device}/cmd/result    QoS 1, not retained: outcome of each command
//
// The device status payload is
//
//	{"state":"connected","since":"...","last_error":null,"conditions":["sensor-off"]}
//
// with "conditions" always present ([] when none), in devstatus.Conditions()
// order; it is empty while the device is disconnected or silent.
//
// Commands (only when Options.OnCommand is set). A command is a JSON object
// published, not retained, on the device's cmd topic:
//
//	{"command":"nibp_start","id":"42"}
//
// "command" is required, [a-z_]{1,32}; "id" is an optional string (at most
// 128 bytes) echoed in the result; other fields are ignored; payloads over
// 4096 bytes are refused. The device level must be [a-z0-9-]{1,32}; a
// command on any other device level, and an empty message (it clears a
// retained one), is ignored without a result. Every other command gets one
// result on {device}/cmd/result:
//
//	{"command":"nibp_start","id":"42","ok":true,"error":null,"time":"..."}
//	{"command":null,"id":null,"ok":false,"error":"payload is not valid JSON: ...","time":"..."}
//
// ok is false, with the reason in "error", for a malformed command, a
// retained one (the broker would replay it on every reconnect), and when
// OnCommand returns an error (unknown device, unsupported command, device
// not connected). "command" and "id" are null when the payload had no valid
// one. Commands are handled one at a time in arrival order; when they arrive
// faster than OnCommand returns, up to 32 wait and the newest beyond that
// are dropped without a result (logged, counted by CommandsDropped).
// Payloads are never logged beyond the command name.
//
// Alarm commands (only when Options.OnAlarmCommand is set) use the same
// form on {room}/alarms/cmd, with their arguments ("alarm", "by", "for"; see
// AlarmCommand), and get their result on alarms/cmd/result.
//
// Delivery of commands is at least once (QoS 1): a command can be delivered,
// and executed, twice when an acknowledgement is lost. The session is
// persistent, so the broker queues commands sent while the agent is
// disconnected and delivers them, late, when it reconnects; a sender that
// cares when a command ran compares the result's "time" with its own.
//
// Delivery. Every message is QoS 1 (paho drops QoS 0 while reconnecting and
// reports success, ecosystem.md). Accepted messages wait, in order, in the
// publisher's backlog while the broker is unreachable and go to paho once
// the connection is open. paho keeps each one in its ordered in-memory store
// until the broker's PUBACK and resends, in order, what the previous
// connection left unacknowledged; new messages wait until that resend is
// acknowledged, so the broker receives readings in the order Consume
// accepted them. QoS 1 is "at least once": a resent message may already
// have reached the broker, so consumers deduplicate by (device, seq).
// Nothing here survives a restart of the agent, and an outage longer than
// maxBacklog messages drops the oldest: durability is the outbox's job.
//
// Session. The client connects with CleanSession=false, so paho resends its
// store on every connection, not only on reconnects (with true, paho wipes
// the store when a first connection succeeds: client.go, Connect). The
// broker keeps one session for the client id, with the command subscription
// and the commands queued for it while the agent is away. ResumeSubs is off
// (paho would otherwise keep the SUBSCRIBE in the store that orders the
// readings); instead the command topic is subscribed again after every
// (re)connect, which also restores it when the broker lost the session, and
// replaces rather than duplicates it when the broker kept it (MQTT 3.1.1
// section 3.8.4). Two agents configured with the same client id would take
// the session from each other; the default id includes site and room.
//
// Retained state after a reconnect. The room status "online" and the latest
// status of every device are published again after each (re)connect: a
// broker that restarted without persistence has forgotten its retained
// messages, and a device that changed state during the outage must not stay
// wrong. The republish is queued behind everything accepted earlier, so it
// can never overwrite a newer status.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

const (
	// queueSize bounds the messages accepted but not yet taken by the
	// sender. The sender takes them at once into its backlog, except while
	// it is inside paho's Publish, which returns within writeTimeout, so the
	// queue only fills when the socket is stuck; at a few tens of readings a
	// second per room it holds over a minute, several times writeTimeout.
	queueSize = 4096
	// maxBacklog bounds the messages held while the broker is unreachable:
	// at 50 readings a second, about 20 minutes, some 25 MB of payloads.
	// Beyond it the oldest is dropped and reported (ErrBacklogFull). Surviving
	// longer outages, and agent restarts, is the outbox's job.
	maxBacklog = 1 << 16
	// pendingSize bounds the tokens waited on in order. Tokens are only
	// taken while connected, and each holds one of paho's 65535 packet ids
	// (MQTT 3.1.1 section 2.3.1) until its PUBACK, so this only fills when
	// the broker stops acknowledging on a live connection; then the sender
	// waits, and Consume blocks once the queue is full too.
	pendingSize = 1 << 16

	connectTimeout = 5 * time.Second
	// writeTimeout bounds a socket write and paho's hand-over of a message
	// to its writer; a connection attempt may wait that long for a Publish
	// in progress (see connectAttempt).
	writeTimeout         = 5 * time.Second
	connectRetryInterval = 2 * time.Second
	maxReconnectInterval = 3 * time.Second

	// While the backlog waits (disconnected, or a resend after a reconnect
	// not yet acknowledged) the sender looks again every resumePoll; it
	// waits for a resend for at most resumeWaitLimit (see ready).
	resumePoll      = 10 * time.Millisecond
	resumeWaitLimit = 15 * time.Second

	// heartbeatInterval spaces Options.Heartbeat calls.
	heartbeatInterval = time.Second

	// cancelCloseTimeout bounds the shutdown that Start's context triggers.
	cancelCloseTimeout = 5 * time.Second
	// disconnectQuiesce is how long paho may take to send DISCONNECT (ms).
	disconnectQuiesce = 250
	// pahoStopLimit bounds the wait for paho's own goroutines after
	// Disconnect: a connect or reconnect in progress finishes its attempt
	// (dial up to connectTimeout, then a sleep of up to the retry interval)
	// before paho notices.
	pahoStopLimit = connectTimeout + maxReconnectInterval + connectRetryInterval + time.Second

	// errorLogInterval limits error logging: during a long outage every
	// refused message would otherwise log a line.
	errorLogInterval = 10 * time.Second
	// topicCacheLimit bounds the cache of reading topics: devices are
	// configured, so the limit is only reached by a caller's bug.
	topicCacheLimit = 1024
)

var (
	// ErrClosed: the publisher is closed (or closing) and refused a message.
	ErrClosed = errors.New("mqtt: publisher closed")
	// ErrNotStarted: a message was offered before Start.
	ErrNotStarted = errors.New("mqtt: publisher not started")
	// ErrUnknownMetric: a reading without a catalogue metric has no topic.
	ErrUnknownMetric = errors.New("mqtt: reading has no known metric")
	// ErrNotAcknowledged: the publisher stopped before the broker
	// acknowledged a message.
	ErrNotAcknowledged = errors.New("mqtt: not acknowledged by the broker")
	// ErrNotSent: the publisher stopped before the connection allowed
	// sending the message.
	ErrNotSent = errors.New("mqtt: closed before the message could be sent")
	// ErrBacklogFull: the broker was unreachable for so long that the oldest
	// waiting message was dropped to make room (see maxBacklog).
	ErrBacklogFull = errors.New("mqtt: backlog full during broker outage; oldest message dropped")
)

// PublishError is a message that was refused or not confirmed. It is given
// to Options.OnPublishError. A publish error does not prove the message was
// lost (ecosystem.md, MQTT): paho may still deliver it after a reconnect.
type PublishError struct {
	Topic string
	Err   error
}

func (e *PublishError) Error() string { return "mqtt: publish " + e.Topic + ": " + e.Err.Error() }
func (e *PublishError) Unwrap() error { return e.Err }

// ReadingError is a reading or device status that cannot be published
// because its device id or metric cannot form a topic.
type ReadingError struct {
	Device string
	Metric drivers.MetricID
	Err    error
}

func (e *ReadingError) Error() string {
	return fmt.Sprintf("mqtt: device %q metric %s: %v", e.Device, e.Metric, e.Err)
}
func (e *ReadingError) Unwrap() error { return e.Err }

// UnacknowledgedError is returned by Close when the broker had not
// acknowledged every message before the deadline.
type UnacknowledgedError struct {
	Count int // messages never sent or still in paho's store
	Err   error
}

func (e *UnacknowledgedError) Error() string {
	return fmt.Sprintf("mqtt: closed with %d messages not acknowledged by the broker: %v", e.Count, e.Err)
}
func (e *UnacknowledgedError) Unwrap() error { return e.Err }

// outbound is one message on its way to paho.
type outbound struct {
	topic    string
	payload  []byte
	retained bool
}

type pendingToken struct {
	token paho.Token
	topic string
}

type topicKey struct {
	device string
	metric drivers.MetricID
}

// Publisher sends readings and states to one broker. Its methods are safe
// for concurrent use.
//
// Three goroutines, all stopped by Close or by Start's context: run (owns
// the connection callbacks and the shutdown), send (the only caller of
// paho's Publish, so messages reach paho in the order they were accepted)
// and ack (waits on paho's tokens in order and reports failures). With
// Options.OnCommand a fourth, the command goroutine (commands.go),
// subscribes after each connect and calls OnCommand.
type Publisher struct {
	s               *settings
	log             *slog.Logger
	roomStatusTopic string
	roomTopic       string // "{prefix}/{site}/{room}/": device topics start with it
	commandFilter   string // {prefix}/{site}/{room}/+/cmd

	// enqueueMu orders accepting messages against shutdown: Consume holds it
	// shared while handing a message to the queue, shutdown takes it
	// exclusively to close the queue for good.
	enqueueMu    sync.RWMutex
	started      bool
	closed       bool
	client       paho.Client
	store        *resumeStore
	connectToken paho.Token

	queue    chan outbound
	tokens   chan pendingToken
	events   chan bool
	closeReq chan context.Context

	closeOnce sync.Once
	closing   chan struct{} // closed when shutdown begins: releases blocked enqueuers
	drain     chan struct{} // closed after the last accepted message: send flushes and stops
	abortOnce sync.Once
	abort     chan struct{} // closed when waiting is over: send and ack stop waiting
	sendDone  chan struct{}
	ackDone   chan struct{}
	done      chan struct{} // closed when everything has stopped
	closeErr  error         // written by run before done is closed

	// handoverMu makes handing a message to paho and starting a connection
	// attempt exclusive (see ready and connectAttempt); handoverIdle is
	// signalled when a hand-over ends.
	handoverMu   sync.Mutex
	handoverIdle *sync.Cond
	publishing   bool // inside paho's Publish
	// attempts counts connection attempts, snapshotsAtAttempt is the
	// store's snapshot count when the latest one began. Both under
	// handoverMu.
	attempts           uint64
	snapshotsAtAttempt uint64
	// Owned by send: the attempt whose resend is done, the attempt being
	// waited for and since when, and how many messages it never sent.
	resumed       uint64
	resumeAttempt uint64
	resumeSince   time.Time
	unsent        int // read by shutdown after sendDone

	failureLogged atomic.Bool  // a failed connection attempt was logged since the last connect
	connectedAt   atomic.Int64 // Unix ns of the latest connect
	quickLosses   atomic.Int32 // connections lost within quickLossAfter, in a row

	topicMu sync.RWMutex
	topics  map[topicKey]string

	// statusMu is held while a device status is recorded and queued, so the
	// republish after a reconnect never queues an older status after a
	// newer one.
	statusMu sync.Mutex
	statuses map[string][]byte // device id -> its latest status payload

	errMu         sync.Mutex
	errLogged     time.Time
	errSuppressed int

	// Commands (commands.go): paho's inbound goroutine hands them to
	// commands, which the command goroutine (started by Start when
	// OnCommand is set) drains; run asks it to subscribe via subscribeReq.
	commands        chan inboundCommand
	subscribeReq    chan struct{}
	commandsDone    chan struct{}
	commandsDropped atomic.Uint64
	commandLogLimit logLimiter

	// Outbox (outbox.go): OutboxChanged wakes the sender; outboxSent is
	// the last outbox ID handed to paho (owned by send); delivery maps
	// paho's packets to outbox IDs.
	outboxWake chan struct{}
	outboxSent int64
	delivery   outboxIDs
	// fresh holds messages just committed (OutboxCommitted); behind means
	// the sender must read the outbox instead (at start, after an outage).
	freshMu sync.Mutex
	fresh   []OutboxMessage
	behind  bool
}

// New validates o and reads the TLS files. It does not connect.
func New(o Options) (*Publisher, error) {
	s, err := validate(o)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		s:               s,
		log:             s.Logger.With(slog.String("component", "mqtt")),
		roomStatusTopic: s.TopicPrefix + "/" + s.Site + "/" + s.Room + "/status",
		roomTopic:       s.TopicPrefix + "/" + s.Site + "/" + s.Room + "/",
		commandFilter:   s.TopicPrefix + "/" + s.Site + "/" + s.Room + "/+/cmd",
		queue:           make(chan outbound, queueSize),
		tokens:          make(chan pendingToken, pendingSize),
		events:          make(chan bool, 16),
		closeReq:        make(chan context.Context, 1),
		closing:         make(chan struct{}),
		drain:           make(chan struct{}),
		abort:           make(chan struct{}),
		sendDone:        make(chan struct{}),
		ackDone:         make(chan struct{}),
		done:            make(chan struct{}),
		topics:          make(map[topicKey]string),
		statuses:        make(map[string][]byte),
		commands:        make(chan inboundCommand, commandQueueSize),
		subscribeReq:    make(chan struct{}, 1),
		commandsDone:    make(chan struct{}),
		outboxWake:      make(chan struct{}, 1),
		behind:          true, // an earlier run may have left messages
	}
	p.handoverIdle = sync.NewCond(&p.handoverMu)
	return p, nil
}

// Start begins connecting and returns without waiting for the broker: paho
// retries the first connection every few seconds and reconnects after a
// loss. Messages offered meanwhile are kept in order and sent once
// connected. It fails only when called twice or after Close. When ctx ends
// the publisher shuts down as Close does, bounded by a few seconds.
func (p *Publisher) Start(ctx context.Context) error {
	p.enqueueMu.Lock()
	defer p.enqueueMu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.started {
		return errors.New("mqtt: publisher already started")
	}

	p.store = newResumeStore()
	if p.s.Outbox != nil {
		p.store.onPut = p.delivery.put
		p.store.onDel = p.delivered
	}
	opts := paho.NewClientOptions().
		AddBroker(p.s.URL).
		SetClientID(p.s.ClientID).
		SetUsername(p.s.Username).
		SetPassword(p.s.Password).
		SetCleanSession(false).
		SetResumeSubs(false).
		// Inbound handlers run one at a time in arrival order and must not
		// block (ecosystem.md, MQTT): commandArrived only hands over.
		SetOrderMatters(true).
		SetDefaultPublishHandler(p.unroutedMessage).
		SetStore(p.store).
		SetKeepAlive(p.s.KeepAlive).
		SetPingTimeout(p.s.KeepAlive/2+time.Second).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(writeTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(connectRetryInterval).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetBinaryWill(p.roomStatusTopic, p.roomStatus("offline", time.Now()), 1, true).
		SetReconnectingHandler(func(_ paho.Client, o *paho.ClientOptions) {
			// The will is fixed per connection; give it that connection's time.
			o.SetBinaryWill(p.roomStatusTopic, p.roomStatus("offline", time.Now()), 1, true)
		}).
		SetConnectionAttemptHandler(p.connectAttempt).
		SetConnectionNotificationHandler(p.connectionNotification)
	if p.s.tls != nil {
		opts.SetTLSConfig(p.s.tls)
	}
	for _, u := range p.s.FailoverURLs {
		opts.AddBroker(u)
	}
	p.client = paho.NewClient(opts)
	if p.commandsEnabled() {
		// The route exists before the first connection: with a persistent
		// session the broker delivers commands queued while the agent was
		// away right after CONNACK, before the SUBSCRIBE of this
		// connection is even sent.
		p.client.AddRoute(p.commandFilter, p.commandArrived)
	}
	p.started = true

	// The token completes once connected (or given up at Close); progress
	// arrives as notifications, buffered in events until run reads them.
	p.connectToken = p.client.Connect()
	go p.send()
	go p.ack()
	go p.run(ctx)
	if p.commandsEnabled() {
		go p.commandLoop()
	}
	p.log.Info("connecting", slog.String("url", p.s.loggedURL), slog.String("client_id", p.s.ClientID))
	return nil
}

// Consume queues r for publishing on {prefix}/{site}/{room}/{device}/{metric}.
// It returns once the message is queued, without waiting for the network.
// Readings are sent in the order Consume is called. When the queue is full
// (the connection's socket is stuck, see queueSize) Consume blocks until
// there is room rather than drop a reading silently. A reading that cannot
// be published is reported to OnPublishError.
func (p *Publisher) Consume(r *drivers.Reading) {
	topic, err := p.readingTopic(r.Device, r.Metric)
	if err != nil {
		p.reportError(err)
		return
	}
	payload := AppendReadingJSON(make([]byte, 0, 384+24*len(r.Samples)), p.s.Site, p.s.Room, r)
	if err := p.enqueue(outbound{topic: topic, payload: payload}, nil); err != nil {
		p.reportError(&PublishError{Topic: topic, Err: err})
	}
}

// DeviceStatus publishes s, retained, on {prefix}/{site}/{room}/{device}/status
// and remembers it for the republish after a reconnect. Call it whenever the
// device's state or its set of conditions changes: the retained message is
// the whole current status, conditions included.
func (p *Publisher) DeviceStatus(s devstatus.Status) {
	if err := validTopicLevel(s.Device); err != nil {
		p.reportError(&ReadingError{Device: s.Device, Err: err})
		return
	}
	topic := p.deviceStatusTopic(s.Device)
	// The encoded payload is what is remembered: it never changes once
	// built (paho only reads it), and it does not alias the caller's
	// Conditions slice.
	payload := appendDeviceStatusJSON(make([]byte, 0, 160), s)
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	if _, known := p.statuses[s.Device]; known || len(p.statuses) < topicCacheLimit {
		p.statuses[s.Device] = payload
	}
	if err := p.enqueue(outbound{topic: topic, payload: payload, retained: true}, nil); err != nil {
		p.reportError(&PublishError{Topic: topic, Err: err})
	}
}

// Connected reports whether the broker connection is up now.
func (p *Publisher) Connected() bool {
	p.enqueueMu.RLock()
	c := p.client
	p.enqueueMu.RUnlock()
	return c != nil && c.IsConnectionOpen()
}

// Close stops accepting messages, sends everything already accepted, then
// the retained room status "offline", waits until the broker has
// acknowledged all of it or ctx ends, disconnects and stops every goroutine.
// When ctx ends first it returns an *UnacknowledgedError; give ctx a
// deadline, or Close waits as long as the broker is unreachable. Waiting for
// paho to stop after the disconnect is bounded separately by a few seconds.
// No command is started once Close has begun; Close waits for an
// Options.OnCommand call in progress to return (its result may not be
// published). Calling Close again returns the first result.
func (p *Publisher) Close(ctx context.Context) error {
	p.enqueueMu.Lock()
	started := p.started
	if !started {
		p.closed = true
	}
	p.enqueueMu.Unlock()
	if !started {
		return nil
	}
	p.beginClose()
	select {
	case p.closeReq <- ctx:
	default: // a shutdown was already requested
	}
	<-p.done
	return p.closeErr
}

func (p *Publisher) beginClose()  { p.closeOnce.Do(func() { close(p.closing) }) }
func (p *Publisher) stopWaiting() { p.abortOnce.Do(func() { close(p.abort) }) }

// enqueue hands m to the sender, blocking while the queue is full. stop, if
// not nil, abandons the wait.
func (p *Publisher) enqueue(m outbound, stop <-chan struct{}) error {
	p.enqueueMu.RLock()
	defer p.enqueueMu.RUnlock()
	switch {
	case p.closed:
		return ErrClosed
	case !p.started:
		return ErrNotStarted
	}
	select {
	case p.queue <- m:
		return nil
	case <-p.closing:
		return ErrClosed
	case <-stop:
		return ErrClosed
	}
}

func (p *Publisher) readingTopic(device string, metric drivers.MetricID) (string, error) {
	key := topicKey{device: device, metric: metric}
	p.topicMu.RLock()
	topic, ok := p.topics[key]
	p.topicMu.RUnlock()
	if ok {
		return topic, nil
	}
	if err := validTopicLevel(device); err != nil {
		return "", &ReadingError{Device: device, Metric: metric, Err: err}
	}
	if metric.Info().ID == drivers.MetricUnknown {
		return "", &ReadingError{Device: device, Metric: metric, Err: ErrUnknownMetric}
	}
	topic = p.s.TopicPrefix + "/" + p.s.Site + "/" + p.s.Room + "/" + device + "/" + metric.String()
	p.topicMu.Lock()
	if len(p.topics) < topicCacheLimit {
		p.topics[key] = topic
	}
	p.topicMu.Unlock()
	return topic, nil
}

func (p *Publisher) deviceStatusTopic(device string) string {
	return p.s.TopicPrefix + "/" + p.s.Site + "/" + p.s.Room + "/" + device + "/status"
}

func (p *Publisher) roomStatus(state string, since time.Time) []byte {
	return appendRoomStatusJSON(make([]byte, 0, 128), state, p.s.Version, since)
}

// connectAttempt runs on paho's connecting goroutine before every dial. It
// waits for a Publish in progress to return, and counts the attempt so that
// no Publish starts until ready sees the new connection's resend done.
// Otherwise a Publish that was waiting for the old connection's writer
// would be written by the new connection ahead of paho's resend of older
// messages, and paho's resume would write that same packet concurrently.
// The wait is bounded: Publish gives up after writeTimeout.
func (p *Publisher) connectAttempt(_ *url.URL, tlsCfg *tls.Config) *tls.Config {
	p.handoverMu.Lock()
	for p.publishing {
		p.handoverIdle.Wait()
	}
	p.snapshotsAtAttempt = p.store.snapshots.Load()
	p.attempts++
	p.handoverMu.Unlock()
	return tlsCfg
}

// connectionNotification runs on paho's goroutines: Failed on the
// connecting goroutine, Connected and Lost each on a fresh goroutine, so
// those two can arrive out of order (see run).
func (p *Publisher) connectionNotification(_ paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationFailed:
		// Every few seconds while the broker is unreachable: log the first.
		level := slog.LevelDebug
		if p.failureLogged.CompareAndSwap(false, true) {
			level = slog.LevelWarn
		}
		p.log.Log(context.Background(), level, "connection attempt failed; retrying",
			slog.String("url", p.s.loggedURL), slog.Any("error", n.Reason))
	case paho.ConnectionNotificationConnected:
		p.failureLogged.Store(false)
		p.connectedAt.Store(time.Now().UnixNano())
		p.notify(true)
	case paho.ConnectionNotificationLost:
		p.log.Warn("connection lost; reconnecting", slog.Any("error", n.Reason))
		p.noteQuickLoss()
		p.notify(false)
	}
}

// quickLossLimit and quickLossAfter: a broker that drops the connection
// within seconds of every connect, several times running, is most often
// refusing what the agent publishes (Mosquitto closes the connection of a
// client whose publish its ACL denies: MQTT 3.1.1 has no negative PUBACK).
const (
	quickLossAfter = 10 * time.Second
	quickLossLimit = 3
)

// noteQuickLoss counts connections lost soon after they were made and says
// what is likely wrong once they repeat.
func (p *Publisher) noteQuickLoss() {
	since := time.Duration(time.Now().UnixNano() - p.connectedAt.Load())
	if since > quickLossAfter {
		p.quickLosses.Store(0)
		return
	}
	if p.quickLosses.Add(1) == quickLossLimit {
		p.log.Error("the broker closes the connection within seconds of every connect: check that its ACL lets this agent's user publish on "+
			p.roomTopic+"# (Mosquitto drops a client whose publish it denies), and that no other client uses the id "+p.s.ClientID,
			slog.Int("losses", quickLossLimit))
	}
}

func (p *Publisher) notify(up bool) {
	select {
	case p.events <- up:
	case <-p.done:
	}
}

// run owns the connection state and the shutdown.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	connected := false
	report := func(up bool) {
		if up == connected {
			return
		}
		connected = up
		if p.s.OnConnectionChange != nil {
			p.s.OnConnectionChange(up)
		}
	}
	for {
		select {
		case up := <-p.events:
			// paho starts a goroutine per notification, so after a quick
			// reconnect "connected" can arrive before "lost": report the
			// loss, then what the connection really is now.
			if up {
				report(true)
				p.log.Info("connected", slog.String("url", p.s.loggedURL))
				p.requestSubscribe()
				p.queueStates(ctx.Done())
			} else {
				report(false)
				report(p.client.IsConnectionOpen())
			}
		case <-ctx.Done():
			closeCtx, cancel := context.WithTimeout(context.Background(), cancelCloseTimeout)
			p.closeErr = p.shutdown(closeCtx)
			cancel()
			report(false)
			return
		case closeCtx := <-p.closeReq:
			p.closeErr = p.shutdown(closeCtx)
			report(false)
			return
		}
	}
}

// queueStates queues the room status "online" and the latest status of
// every device, after a (re)connect.
func (p *Publisher) queueStates(stop <-chan struct{}) {
	if err := p.enqueue(outbound{topic: p.roomStatusTopic, payload: p.roomStatus("online", time.Now()), retained: true}, stop); err != nil {
		return // closing: the offline status follows
	}
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	for device, payload := range p.statuses {
		if err := p.enqueue(outbound{topic: p.deviceStatusTopic(device), payload: payload, retained: true}, stop); err != nil {
			return
		}
	}
}

// shutdown runs once, on run's goroutine.
func (p *Publisher) shutdown(ctx context.Context) error {
	p.beginClose()
	p.enqueueMu.Lock()
	p.closed = true
	p.enqueueMu.Unlock()
	close(p.drain)

	select {
	case <-p.sendDone:
	case <-ctx.Done():
		p.stopWaiting()
		<-p.sendDone // bounded: a paho Publish returns within writeTimeout
	}

	unacked := p.unsent + p.awaitAcks(ctx)
	if unacked > 0 {
		p.log.Warn("closing with messages the broker has not acknowledged", slog.Int("count", unacked))
	}
	p.disconnect()
	p.stopWaiting()
	<-p.ackDone
	p.commandsStopped()
	p.log.Info("disconnected")
	if unacked > 0 {
		return &UnacknowledgedError{Count: unacked, Err: ctx.Err()}
	}
	return nil
}

// awaitAcks waits until paho holds no message the broker has not
// acknowledged, and returns how many were left when ctx ended. send has
// stopped, so nothing is added meanwhile: every message it handed over is
// either in the store or was reported as refused.
func (p *Publisher) awaitAcks(ctx context.Context) int {
	t := time.NewTicker(resumePoll)
	defer t.Stop()
	for {
		n := p.store.outstanding()
		if n == 0 {
			return 0
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return n
		}
	}
}

// disconnect ends paho's connection and waits until none of its goroutines
// remain. Disconnect returns after its quiesce time even while paho is
// still finishing a connection attempt (dial, then a sleep of up to the
// retry interval); a second Disconnect waits for the first to complete,
// and the connect token completes when the first connection's goroutine
// gives up.
func (p *Publisher) disconnect() {
	deadline := time.Now().Add(pahoStopLimit)
	p.client.Disconnect(disconnectQuiesce)
	p.client.Disconnect(uint(pahoStopLimit / time.Millisecond))
	p.connectToken.WaitTimeout(pahoStopLimit)
	// A reconnection paho had in flight when Disconnect came (a broker that
	// keeps dropping the connection) can still complete after it: close
	// again until the client stays down.
	for p.client.IsConnected() && time.Now().Before(deadline) {
		p.client.Disconnect(disconnectQuiesce)
		time.Sleep(resumePoll)
	}
}

// send is the only goroutine that calls paho's Publish. It moves accepted
// messages from the queue to its backlog at once, so Consume does not wait
// for the broker, and hands the backlog to paho in order whenever ready
// says so. While the connection is down the backlog grows, up to
// maxBacklog messages, and is polled every resumePoll.
func (p *Publisher) send() {
	defer close(p.sendDone)
	defer close(p.tokens)
	var backlog []outbound
	retry := time.NewTimer(resumePoll)
	defer retry.Stop()
	drain := p.drain
	draining := false
	// outboxDue: the outbox may hold messages not yet handed over (at
	// start: whatever an earlier run left).
	outboxDue := p.s.Outbox != nil
	p.logReplay()
	var heartbeat <-chan time.Time
	if p.s.Heartbeat != nil {
		hb := time.NewTicker(heartbeatInterval)
		defer hb.Stop()
		heartbeat = hb.C
	}
	for {
		if outboxDue && !draining {
			outboxDue = !p.sendOutbox()
		}
		for len(backlog) > 0 && p.beginHandover() {
			m := backlog[0]
			token := p.client.Publish(m.topic, 1, m.retained, m.payload)
			p.endHandover()
			p.track(m.topic, token)
			backlog[0] = outbound{} // release the payload
			backlog = backlog[1:]
		}
		if draining && len(backlog) == 0 {
			return
		}
		var tick <-chan time.Time
		if len(backlog) > 0 || outboxDue {
			retry.Reset(resumePoll)
			tick = retry.C
		}
		select {
		case m := <-p.queue:
			backlog = p.appendBacklog(backlog, m)
		case <-p.outboxWake:
			outboxDue = true
		case <-heartbeat:
			p.s.Heartbeat()
		case <-tick:
		case <-drain:
			// Nothing more can be queued (shutdown holds enqueueMu): take
			// what is queued, then the offline status goes last.
			drain, draining = nil, true
			// What the outbox holds goes first (the caller stopped its
			// writer before Close, so nothing is added); what cannot be
			// sent now stays in the outbox for the next run.
			if p.s.Outbox != nil {
				p.sendOutbox()
			}
			for empty := false; !empty; {
				select {
				case m := <-p.queue:
					backlog = p.appendBacklog(backlog, m)
				default:
					empty = true
				}
			}
			backlog = p.appendBacklog(backlog, outbound{topic: p.roomStatusTopic, payload: p.roomStatus("offline", time.Now()), retained: true})
		case <-p.abort:
			for _, m := range backlog {
				p.reportError(&PublishError{Topic: m.topic, Err: ErrNotSent})
			}
			p.unsent = len(backlog)
			return
		}
	}
}

// appendBacklog adds m, dropping the oldest message when the backlog is
// full: during an outage that long the newest readings matter most, and
// the statuses are queued again after the reconnect.
func (p *Publisher) appendBacklog(backlog []outbound, m outbound) []outbound {
	if len(backlog) >= maxBacklog {
		p.reportError(&PublishError{Topic: backlog[0].topic, Err: ErrBacklogFull})
		backlog[0] = outbound{}
		backlog = backlog[1:]
	}
	return append(backlog, m)
}

// beginHandover reports whether the next message can go to paho now and,
// if so, marks a Publish in progress; endHandover ends it.
func (p *Publisher) beginHandover() bool {
	p.handoverMu.Lock()
	defer p.handoverMu.Unlock()
	if !p.ready() {
		return false
	}
	p.publishing = true
	return true
}

func (p *Publisher) endHandover() {
	p.handoverMu.Lock()
	p.publishing = false
	p.handoverIdle.Broadcast()
	p.handoverMu.Unlock()
}

// track hands an open token to ack, and reports one that failed at once.
func (p *Publisher) track(topic string, token paho.Token) {
	select {
	case <-token.Done(): // refused at once (no packet id, timeout, closed)
		if err := token.Error(); err != nil {
			p.reportError(&PublishError{Topic: topic, Err: err})
		}
		return
	default:
	}
	select {
	case p.tokens <- pendingToken{token: token, topic: topic}:
	case <-p.abort:
		// Stopping: Close counts what is left unacknowledged in the store.
	}
}

// ready reports whether the next message can go to paho now; called by
// send with handoverMu held.
//
// Only while the connection is open: paho's Publish while it connects
// stores the message, and if the connection comes up during that call it
// also writes the same packet directly while its resume writes it again, a
// data race inside paho (client.go, Publish and resume).
//
// And not right after a (re)connect until paho has resent the messages the
// previous connection left unacknowledged: paho marks the connection open
// before it snapshots its store and resends, and a message published
// meanwhile would be resent too (the same race) or overtake older ones.
// connectAttempt counts every connection attempt before its dial, so a
// changed count means "new connection"; a store snapshot taken since that
// attempt means the resend is decided, and an empty store then means it is
// done and acknowledged. After
// resumeWaitLimit the backlog goes regardless: a broker that never
// acknowledges must not hold the readings back for good.
func (p *Publisher) ready() bool {
	if !p.client.IsConnectionOpen() {
		return false
	}
	attempt := p.attempts
	if attempt == p.resumed {
		return true
	}
	if attempt != p.resumeAttempt {
		p.resumeAttempt, p.resumeSince = attempt, time.Now()
	}
	if p.store.snapshots.Load() > p.snapshotsAtAttempt && p.store.outstanding() == 0 {
		p.resumed = attempt
		return true
	}
	if time.Since(p.resumeSince) > resumeWaitLimit {
		p.log.Warn("broker has not acknowledged the resent messages; publishing new ones regardless",
			slog.Int("unacknowledged", p.store.outstanding()))
		p.resumed = attempt
		return true
	}
	return false
}

// ack waits on paho's tokens in publish order and reports failures. A token
// that completes without error is not proof of delivery: paho also completes
// it when it hands the message to a resend after a reconnect.
func (p *Publisher) ack() {
	defer close(p.ackDone)
	for pt := range p.tokens {
		select {
		case <-pt.token.Done():
		case <-p.abort:
			select {
			case <-pt.token.Done():
			default:
				p.reportError(&PublishError{Topic: pt.topic, Err: ErrNotAcknowledged})
				continue
			}
		}
		if err := pt.token.Error(); err != nil {
			p.reportError(&PublishError{Topic: pt.topic, Err: err})
		}
	}
}

// reportError tells OnPublishError and logs, at most one line per
// errorLogInterval with the count of errors not logged.
func (p *Publisher) reportError(err error) {
	if p.s.OnPublishError != nil {
		p.s.OnPublishError(err)
	}
	p.errMu.Lock()
	now := time.Now()
	if now.Sub(p.errLogged) < errorLogInterval {
		p.errSuppressed++
		p.errMu.Unlock()
		return
	}
	suppressed := p.errSuppressed
	p.errSuppressed = 0
	p.errLogged = now
	p.errMu.Unlock()
	p.log.Warn("message not published", slog.Any("error", err), slog.Int("similar_errors_not_logged", suppressed))
}
