package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/store"
)

// newStoreMetrics exports the store's and the session's state, read at
// scrape time: vigil_outbox_depth, vigil_outbox_oldest_age_seconds,
// vigil_store_errors_total, vigil_session_active,
// vigil_session_elapsed_seconds and vigil_next_nibp_due_seconds. Without a
// store (it could not be opened) the outbox metrics are absent and
// vigil_store_up is 0.
func newStoreMetrics(reg prometheus.Registerer, site, room string, st *store.Store, w *store.Writer, sess *sessions) {
	labels := prometheus.Labels{"site": site, "room": room}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	up := 0.0
	if st != nil {
		up = 1
	}
	gauge("vigil_store_up", "1 when the local store is open; 0 when readings are only published live.", func() float64 { return up })
	if st != nil {
		// One query serves both outbox gauges of a scrape.
		stats := func() (float64, float64) {
			depth, oldest, err := st.OutboxStats()
			if err != nil {
				return -1, -1 // the store failing is vigil_store_errors_total's to say
			}
			age := 0.0
			if !oldest.IsZero() {
				age = time.Since(oldest).Seconds()
			}
			return float64(depth), age
		}
		gauge("vigil_outbox_depth", "Messages committed to the outbox that the broker has not acknowledged; -1 when the store cannot be read.", func() float64 { d, _ := stats(); return d })
		gauge("vigil_outbox_oldest_age_seconds", "Age of the oldest message waiting in the outbox; 0 when it is empty, -1 when the store cannot be read.", func() float64 { _, a := stats(); return a })
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_store_errors_total", Help: "Failed store commits (each is retried; the storage alarm is raised).", ConstLabels: labels,
		}, func() float64 { return float64(w.Errors()) }))
	}
	gauge("vigil_session_active", "1 while a dosing session runs in the room.", func() float64 {
		if _, ok := sess.active(); ok {
			return 1
		}
		return 0
	})
	gauge("vigil_session_elapsed_seconds", "Time since the active session started; 0 without a session.", func() float64 {
		if s, ok := sess.active(); ok {
			return time.Since(s.Started).Seconds()
		}
		return 0
	})
	gauge("vigil_next_nibp_due_seconds", "Seconds until the next scheduled blood pressure, negative when overdue; 0 when none is scheduled (see vigil_session_active).", func() float64 {
		if due, ok := sess.nextNIBPDue(); ok {
			return time.Until(due).Seconds()
		}
		return 0
	})
}

// newOutboxDroppedCounter counts outbox messages dropped to keep the outbox
// within its bounds.
func newOutboxDroppedCounter(reg prometheus.Registerer, site, room string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_outbox_dropped_total", Help: "Outbox messages dropped to stay within store.outbox_max_messages or outbox_max_age (they remain in the store's tables).",
		ConstLabels: prometheus.Labels{"site": site, "room": room},
	})
	reg.MustRegister(c)
	return c
}
