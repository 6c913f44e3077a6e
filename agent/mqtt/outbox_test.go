package mqtt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

// memoryOutbox is an Outbox in memory, deleting what is delivered: the
// publisher's side of the contract (agent/store is the durable one, tested
// with this publisher in agent/).
type memoryOutbox struct {
	mu        sync.Mutex
	msgs      []OutboxMessage
	delivered []int64
	nextID    int64
}

func (o *memoryOutbox) add(p *Publisher, from, to uint64) {
	o.commit(from, to)
	if p != nil {
		p.OutboxChanged()
	}
}

// commit adds the messages as a commit does, and returns them.
func (o *memoryOutbox) commit(from, to uint64) []OutboxMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	var added []OutboxMessage
	for seq := from; seq <= to; seq++ {
		m := expected(seq)
		o.nextID++
		added = append(added, OutboxMessage{ID: o.nextID, Topic: m.Topic, Payload: []byte(m.Payload)})
	}
	o.msgs = append(o.msgs, added...)
	return added
}

func (o *memoryOutbox) Outbox(afterID int64, limit int) ([]OutboxMessage, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []OutboxMessage
	for _, m := range o.msgs {
		if m.ID > afterID && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (o *memoryOutbox) onDelivered(id int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered = append(o.delivered, id)
	for i, m := range o.msgs {
		if m.ID == id {
			o.msgs = append(o.msgs[:i], o.msgs[i+1:]...)
			break
		}
	}
}

func (o *memoryOutbox) left() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

// TestPublisherOutbox: messages an earlier run left in the outbox are sent
// first, marked replayed; new ones follow in ID order as they are
// committed, including across a broken connection; every message is
// reported delivered only after the broker's PUBACK, so the outbox ends
// empty; and the number of deliveries equals the number of messages.
func TestPublisherOutbox(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	proxy := startProxy(t, mosq.Addr())
	sub := subscribe(t, mosq.URL(), readingsOnly, "")
	ob := &memoryOutbox{}
	ob.add(nil, 1, 20) // left by an earlier run
	log := newConnectionLog()
	p, err := New(Options{
		URL: proxy.URL(), Site: testSite, Room: testRoom, Version: "test-1.0",
		ClientID: "vigil-test-outbox", KeepAlive: 2 * time.Second, Logger: testLogger(t),
		OnConnectionChange: log.change, OnPublishError: log.publishError,
		Outbox: ob, OnDelivered: ob.onDelivered, ReplayThrough: 20,
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
		p.Close(ctx)
	})
	msgs := sub.waitFor(t, "the replayed messages", func(m []message) bool { return len(m) >= 20 })
	for i, m := range msgs[:20] {
		want := expected(uint64(i + 1))
		if m.Topic != want.Topic || m.Payload != strings.TrimSuffix(want.Payload, "}")+`,"replayed":true}` {
			t.Fatalf("replayed %d: %s %s", i+1, m.Topic, m.Payload)
		}
	}
	// Handed over from memory, as the agent's commits do.
	p.OutboxCommitted(ob.commit(21, 30))
	p.OutboxCommitted(ob.commit(31, 40))
	sub.waitFor(t, "new messages", func(m []message) bool { return len(m) >= 40 })

	// Committed while the connection is broken: sent after it is back.
	proxy.Break()
	log.waitChanges(t, []bool{true, false})
	p.OutboxCommitted(ob.commit(41, 60))
	p.OutboxCommitted(ob.commit(61, 80))
	proxy.Mend()
	sub.waitFor(t, "messages after the reconnect", func(m []message) bool { return distinctSeqs(t, m) >= 80 })
	// A commit the publisher was not told of (lost hand-over): the next
	// one reveals the gap, and the outbox supplies the missing messages.
	ob.commit(81, 85)
	p.OutboxCommitted(ob.commit(86, 90))
	msgs = sub.waitFor(t, "the missing messages read back", func(m []message) bool { return distinctSeqs(t, m) >= 90 })
	var plain []message
	for _, m := range msgs[20:] {
		if strings.Contains(m.Payload, `"replayed"`) {
			t.Errorf("a message of this run marked replayed: %s", m.Payload)
		}
		plain = append(plain, m)
	}
	checkOrderedAtLeastOnce(t, plain, 21, 90)
	deadline := time.Now().Add(waitLimit)
	for ob.left() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ob.left(); n != 0 {
		t.Fatalf("%d messages never reported delivered", n)
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	seen := map[int64]bool{}
	for _, id := range ob.delivered {
		if seen[id] {
			t.Errorf("outbox id %d reported delivered twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 90 {
		t.Errorf("%d ids delivered, want 90", len(seen))
	}
}

func TestMarkReplayed(t *testing.T) {
	for in, want := range map[string]string{
		`{"seq":1}`:        `{"seq":1,"replayed":true}`,
		`{"seq":1}` + "\n": `{"seq":1,"replayed":true}`,
		`{}`:               `{"replayed":true}`,
		`[1]`:              `[1]`,
		``:                 ``,
	} {
		if got := string(markReplayed([]byte(in))); got != want {
			t.Errorf("markReplayed(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPublisherFailsOverToSecondBroker: with the first broker down, the
// publisher connects to the next URL, and readings arrive there.
func TestPublisherFailsOverToSecondBroker(t *testing.T) {
	first := testbroker.StartMosquitto(t)
	second := testbroker.StartMosquitto(t)
	first.Stop()
	sub := subscribe(t, second.URL(), readingsOnly, "")
	log := newConnectionLog()
	p, err := New(Options{
		URL: first.URL(), FailoverURLs: []string{second.URL()}, Site: testSite, Room: testRoom,
		ClientID: "vigil-test-failover", KeepAlive: 2 * time.Second, Logger: testLogger(t),
		OnConnectionChange: log.change,
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
		p.Close(ctx)
	})
	consume(p, 1, 10)
	msgs := sub.waitFor(t, "readings at the second broker", func(m []message) bool { return len(m) >= 10 })
	checkExactlyInOrder(t, msgs[:10], 1, 10)
}
