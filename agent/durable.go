package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
)

// maintenanceInterval spaces the store's pruning (retention, outbox bounds,
// size cap).
const maintenanceInterval = time.Minute

// condOutboxDropped: messages waiting for the broker were dropped to keep
// the outbox within its bounds (they stay in the store's tables).
const condOutboxDropped = "outbox-dropped"

// openStore opens the store at store.path, creating its directory.
func openStore(c config.StoreConfig, logger *slog.Logger) (*store.Store, error) {
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o750); err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	o := store.Options{
		SyncFull:         c.SyncFull,
		Retention:        c.Retention,
		OutboxMaxEntries: c.OutboxMaxMessages,
		OutboxMaxAge:     c.OutboxMaxAge,
		MaxBytes:         c.MaxSizeMB << 20,
		Logger:           logger,
	}
	return store.Open(c.Path, o)
}

// storeRecorder commits readings, device events, alarm events and audit entries
// to the store through its single writer; every reading and alarm event
// also goes to the outbox, from which the publisher sends it. When the
// writer refuses (its queue full behind a failing disk), a reading is
// published directly instead, live but not durable, and the storage alarm
// says so: monitoring never waits for the disk.
type storeRecorder struct {
	w      *store.Writer
	pub    *mqtt.Publisher
	site   string
	room   string
	al     *alarms
	logger *slog.Logger

	refused atomic.Uint64 // items the writer refused
	// failing is set while commits fail (a full disk): readings and alarm
	// events are then also published directly, so subscribers stay live;
	// once the disk recovers the queued ones follow through the outbox and
	// subscribers deduplicate by (device, seq).
	failing atomic.Bool
}

// commitFailed and committed track the writer's state (WriterOptions).
func (r *storeRecorder) commitFailed() { r.failing.Store(true) }
func (r *storeRecorder) committed()    { r.failing.Store(false) }

// Consume implements ReadingConsumer.
func (r *storeRecorder) Consume(rd *drivers.Reading) {
	topic, err := r.pub.ReadingTopic(rd.Device, rd.Metric)
	if err != nil {
		r.logger.Warn("reading without a topic not recorded", "device", rd.Device, "err", err)
		return
	}
	payload := mqtt.AppendReadingJSON(make([]byte, 0, 384+24*len(rd.Samples)), r.site, r.room, rd)
	reading := *rd
	err = r.w.Add(store.Item{Reading: &reading, Session: rd.Session, Outbox: &store.Message{Topic: topic, Payload: payload, QoS: 1}})
	if err != nil {
		r.refusedItem(err)
	}
	if err != nil || r.failing.Load() {
		r.pub.Consume(rd)
	}
}

// DeviceStatus implements StatusConsumer: device events are recorded (the
// retained status itself is published by the publisher).
func (r *storeRecorder) DeviceStatus(s devstatus.Status) {
	ev := store.DeviceEvent{Time: s.Since, Device: s.Device, State: s.State, Conditions: s.Conditions, Detail: s.LastError}
	if err := r.w.Add(store.Item{DeviceEvent: &ev}); err != nil {
		r.refusedItem(err)
	}
}

// alarmEvent commits an alarm event with its MQTT message; false when the
// writer refused it (the caller publishes it directly).
func (r *storeRecorder) alarmEvent(ev alarm.Event, payload []byte) bool {
	ev.AckURL = "" // a capability: never stored
	err := r.w.Add(store.Item{AlarmEvent: &ev, Outbox: &store.Message{Topic: r.pub.AlarmEventTopic(), Payload: payload, QoS: 1}})
	if err != nil {
		r.refusedItem(err)
		return false
	}
	return !r.failing.Load() // failing: published directly as well
}

// audit commits an audit entry.
func (r *storeRecorder) audit(e audit.Entry) error {
	if err := r.w.Add(store.Item{Audit: &e}); err != nil {
		r.refusedItem(err)
		return err
	}
	return nil
}

func (r *storeRecorder) refusedItem(err error) {
	n := r.refused.Add(1)
	if n == 1 || n%1000 == 0 {
		r.logger.Error("store refused an item; readings are published without the outbox until it recovers", "refused_total", n, "err", err)
	}
	if !errors.Is(err, store.ErrClosed) {
		r.al.setStorage("store", false)
	}
}

// outboxSource adapts the store's outbox to the publisher's.
type outboxSource struct{ st *store.Store }

func (o outboxSource) Outbox(afterID int64, limit int) ([]mqtt.OutboxMessage, error) {
	entries, err := o.st.Outbox(afterID, limit)
	if err != nil {
		return nil, err
	}
	out := make([]mqtt.OutboxMessage, len(entries))
	for i, e := range entries {
		out[i] = mqtt.OutboxMessage{ID: e.ID, Topic: e.Topic, Payload: e.Payload, Retained: e.Retained}
	}
	return out, nil
}

// maintain prunes the store every maintenanceInterval until ctx ends: the
// retention, the outbox bounds and the size cap. Dropping outbox messages
// raises a technical alarm and is counted, never silent.
func maintain(ctx context.Context, st *store.Store, al *alarms, dropped prometheus.Counter, logger *slog.Logger) {
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := st.PruneOutbox(now)
			if err != nil {
				logger.Error("outbox not pruned", "err", err)
			}
			if n > 0 {
				dropped.Add(float64(n))
				logger.Error("outbox messages dropped to stay within store.outbox_max_messages / outbox_max_age; they remain in the store's tables", "dropped", n)
			}
			al.handle(al.engine.SetTechnical("", condOutboxDropped, n > 0, alarm.Medium, now))
			if _, err := st.Prune(now); err != nil {
				logger.Error("store not pruned", "err", err)
			}
		}
	}
}
