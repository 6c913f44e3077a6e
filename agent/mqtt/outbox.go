package mqtt

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// OutboxMessage is a message committed to the durable outbox: the
// publisher sends these in ID order and reports each one the broker has
// acknowledged (Options.OnDelivered), so the outbox can delete it.
type OutboxMessage struct {
	ID       int64
	Topic    string
	Payload  []byte
	Retained bool
}

// Outbox is the durable store the publisher drains (agent/store).
type Outbox interface {
	// Outbox returns up to limit messages with IDs above afterID, in ID
	// order.
	Outbox(afterID int64, limit int) ([]OutboxMessage, error)
}

// outboxPage is how many outbox messages one read takes.
const outboxPage = 512

// replayedField marks a message sent by a later run of the agent than the
// one that took it (README, MQTT): consumers deduplicate on (device, seq).
var replayedField = []byte(`,"replayed":true}`)

// markReplayed adds "replayed": true to a JSON object payload.
func markReplayed(payload []byte) []byte {
	trimmed := bytes.TrimRight(payload, " \n")
	if len(trimmed) < 2 || trimmed[0] != '{' || trimmed[len(trimmed)-1] != '}' {
		return payload // not an object: sent as it was
	}
	out := make([]byte, 0, len(trimmed)+len(replayedField))
	out = append(out, trimmed[:len(trimmed)-1]...)
	if len(trimmed) == 2 { // {}
		return append(out, replayedField[1:]...)
	}
	return append(out, replayedField...)
}

// outboxIDs maps paho's outbound store keys to outbox IDs: Put records the
// outbox ID the sender is publishing (paho's Publish calls Put
// synchronously, on the sender's goroutine), Del (paho's reaction to the
// broker's PUBACK) reports it delivered.
type outboxIDs struct {
	mu   sync.Mutex
	next int64            // the outbox ID of the Publish in progress; 0 for none
	ids  map[string]int64 // paho store key "o.<packet id>" -> outbox ID
}

func (o *outboxIDs) publishing(id int64) {
	o.mu.Lock()
	o.next = id
	o.mu.Unlock()
}

// put is called from the store's Put.
func (o *outboxIDs) put(key string) {
	if !strings.HasPrefix(key, "o.") {
		return
	}
	o.mu.Lock()
	if o.next != 0 {
		if o.ids == nil {
			o.ids = make(map[string]int64)
		}
		o.ids[key] = o.next
		o.next = 0
	}
	o.mu.Unlock()
}

// del is called from the store's Del; it returns the outbox ID delivered.
func (o *outboxIDs) del(key string) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id, ok := o.ids[key]
	if ok {
		delete(o.ids, key)
	}
	return id, ok
}

// OutboxChanged tells the publisher that the outbox changed in a way only
// a read shows: the sender reads it (from the last message handed over) as
// soon as the connection allows. It never blocks.
func (p *Publisher) OutboxChanged() {
	p.freshMu.Lock()
	p.fresh, p.behind = nil, true
	p.freshMu.Unlock()
	p.wakeSender()
}

// OutboxCommitted hands the publisher the messages a commit just added to
// the outbox, in ID order, so the sender need not read them back: the
// path of a reading taken while all is well. When the sender is behind
// (disconnected, or an earlier run's messages still to send) they are
// read from the outbox later instead. It never blocks.
func (p *Publisher) OutboxCommitted(msgs []OutboxMessage) {
	p.freshMu.Lock()
	switch {
	case p.behind:
	case len(p.fresh)+len(msgs) > maxFresh:
		p.fresh, p.behind = nil, true
	default:
		p.fresh = append(p.fresh, msgs...)
	}
	p.freshMu.Unlock()
	p.wakeSender()
}

// maxFresh bounds the committed messages held in memory for the sender;
// beyond it (a long outage) the sender reads the outbox instead.
const maxFresh = 4096

func (p *Publisher) wakeSender() {
	select {
	case p.outboxWake <- struct{}{}:
	default:
	}
}

// nextFresh takes the messages handed over by OutboxCommitted, or reports
// that the sender must read the outbox.
func (p *Publisher) nextFresh() (msgs []OutboxMessage, behind bool) {
	p.freshMu.Lock()
	defer p.freshMu.Unlock()
	if p.behind {
		return nil, true
	}
	msgs, p.fresh = p.fresh, nil
	return msgs, false
}

// fellBehind makes the sender read the outbox from where it is: messages
// were taken from memory but could not be handed over, or one is missing.
func (p *Publisher) fellBehind() {
	p.freshMu.Lock()
	p.fresh, p.behind = nil, true
	p.freshMu.Unlock()
}

// caughtUp ends reading the outbox: what it held has been handed over; new
// commits come through memory again.
func (p *Publisher) caughtUp() {
	p.freshMu.Lock()
	p.behind = false
	p.freshMu.Unlock()
}

// sendOutbox hands the outbox's messages after the last one handed over to
// paho, in order, while the connection is ready: from memory when they
// come straight from a commit, else read from the outbox. It returns false
// when it stopped because the connection is not ready (the caller polls).
func (p *Publisher) sendOutbox() bool {
	for {
		msgs, behind := p.nextFresh()
		if behind {
			if !p.readOutbox() {
				return false
			}
			// Caught up. Commits made while reading were not kept in
			// memory (behind was set): read once more after clearing it,
			// so none waits for the next commit; from now on commits come
			// through memory, and those already read are skipped by ID.
			p.caughtUp()
			if !p.readOutbox() {
				return false
			}
			continue
		}
		if len(msgs) == 0 {
			return true
		}
		for _, m := range msgs {
			if m.ID <= p.outboxSent {
				continue // already read from the outbox
			}
			if p.outboxSent != 0 && m.ID != p.outboxSent+1 {
				p.fellBehind() // a message is missing: read the outbox
				break
			}
			if !p.publishOutbox(m) {
				p.fellBehind() // the rest stays in the outbox for later
				return false
			}
		}
	}
}

// readOutbox hands over what the outbox holds after the last message
// handed over, page by page; false when the connection is not ready.
func (p *Publisher) readOutbox() bool {
	for {
		page, err := p.s.Outbox.Outbox(p.outboxSent, outboxPage)
		if err != nil {
			p.reportError(&PublishError{Topic: "outbox", Err: err})
			return false
		}
		for _, m := range page {
			if !p.publishOutbox(m) {
				return false
			}
		}
		if len(page) < outboxPage {
			return true
		}
	}
}

// publishOutbox hands one outbox message to paho; false when the
// connection is not ready.
func (p *Publisher) publishOutbox(m OutboxMessage) bool {
	if !p.beginHandover() {
		return false
	}
	payload := m.Payload
	if m.ID <= p.s.ReplayThrough {
		payload = markReplayed(payload)
	}
	p.delivery.publishing(m.ID)
	token := p.client.Publish(m.Topic, 1, m.Retained, payload)
	p.delivery.publishing(0)
	p.endHandover()
	p.track(m.Topic, token)
	p.outboxSent = m.ID
	return true
}

// delivered is the store's Del hook.
func (p *Publisher) delivered(key string) {
	if id, ok := p.delivery.del(key); ok && p.s.OnDelivered != nil {
		p.s.OnDelivered(id)
	}
}

func (p *Publisher) logReplay() {
	if p.s.Outbox != nil && p.s.ReplayThrough > 0 {
		p.log.Info("replaying messages a previous run did not deliver", slog.String("through_outbox_id", strconv.FormatInt(p.s.ReplayThrough, 10)))
	}
}
