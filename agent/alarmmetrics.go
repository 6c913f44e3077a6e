package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// alarmMetrics are the alarm path's Prometheus series.
type alarmMetrics struct {
	active        *prometheus.GaugeVec
	events        *prometheus.CounterVec
	notifications *prometheus.CounterVec
	latency       prometheus.Histogram
}

func newAlarmMetrics(reg prometheus.Registerer, site, room string, channels []string) *alarmMetrics {
	labels := prometheus.Labels{"site": site, "room": room}
	m := &alarmMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "vigil_alarm_active",
			Help:        "1 for each alarm in force (active, acknowledged or latched).",
			ConstLabels: labels,
		}, []string{"alarm", "priority", "kind", "device"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vigil_alarm_events_total",
			Help:        "Alarm events emitted, by phase, priority and kind.",
			ConstLabels: labels,
		}, []string{"phase", "priority", "kind"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vigil_notifications_total",
			Help:        "Notification attempts by channel and result (delivered, retry, give_up).",
			ConstLabels: labels,
		}, []string{"channel", "result"}),
		// Buckets from 10 ms (the target for the agent's own part) to 2 min
		// (a channel retrying through an outage).
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "vigil_alarm_notify_latency_seconds",
			Help:        "Time from an alarm event being emitted to a channel accepting it.",
			ConstLabels: labels,
			Buckets:     []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
	}
	reg.MustRegister(m.active, m.events, m.notifications, m.latency)
	for _, ch := range channels {
		for _, v := range []notify.Verdict{notify.Delivered, notify.Retry, notify.GiveUp} {
			m.notifications.WithLabelValues(ch, v.String())
		}
	}
	return m
}

func (m *alarmMetrics) event(ev alarm.Event) {
	m.events.WithLabelValues(string(ev.Phase), ev.Priority.String(), string(ev.Kind)).Inc()
}

func (m *alarmMetrics) result(channel string, ev alarm.Event, r notify.Result, now time.Time) {
	m.notifications.WithLabelValues(channel, r.Verdict.String()).Inc()
	if r.Verdict == notify.Delivered && !ev.Sent.IsZero() {
		m.latency.Observe(now.Sub(ev.Sent).Seconds())
	}
}

// setActive replaces the active-alarm series with the current set.
func (m *alarmMetrics) setActive(active []alarm.Event) {
	m.active.Reset()
	for _, ev := range active {
		m.active.WithLabelValues(ev.AlarmID, ev.Priority.String(), string(ev.Kind), ev.Device).Set(1)
	}
}
