package agent_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
)

// outboxAdapter reads the store's outbox for the publisher (the agent's own
// adapter is internal).
type outboxAdapter struct{ st *store.Store }

func (o outboxAdapter) Outbox(after int64, limit int) ([]mqtt.OutboxMessage, error) {
	es, err := o.st.Outbox(after, limit)
	out := make([]mqtt.OutboxMessage, len(es))
	for i, e := range es {
		out[i] = mqtt.OutboxMessage{ID: e.ID, Topic: e.Topic, Payload: e.Payload, Retained: e.Retained}
	}
	return out, err
}

// BenchmarkReplayDrain measures how long the backlog of a 10-minute broker
// outage takes to reach a subscriber through a real Mosquitto once the
// broker is back: numerics at 10 Hz (SpO2, pulse, PI: 30 messages/s) and a
// 75 Hz pleth in 25-sample batches (3 messages/s), 19,800 messages from the
// store's outbox, each deleted on its PUBACK. Issue target: under 10 s.
//
//	go test -run='^$' -bench=ReplayDrain -benchtime=1x ./agent/
func BenchmarkReplayDrain(b *testing.B) {
	for range b.N {
		b.StopTimer()
		mosq := testbroker.StartMosquitto(b)
		st, err := store.Open(filepath.Join(b.TempDir(), "vigil.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		w := st.NewWriter(store.WriterOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()

		const seconds = 600
		t0 := time.Now().Add(-seconds * time.Second)
		var seq uint64
		add := func(r drivers.Reading, topic string) {
			seq++
			r.Seq, r.Device = seq, "ox"
			payload := mqtt.AppendReadingJSON(nil, "clinic-a", "room-1", &r)
			if err := w.Add(store.Item{Reading: &r, Outbox: &store.Message{Topic: topic, Payload: payload, QoS: 1}}); err != nil {
				b.Fatal(err)
			}
		}
		samples := make([]float64, 25)
		for s := 0; s < seconds; s++ {
			for k := 0; k < 10; k++ {
				at := t0.Add(time.Duration(s)*time.Second + time.Duration(k)*100*time.Millisecond)
				add(drivers.Reading{Metric: drivers.SpO2, Value: 97, Valid: true, Received: at}, "vigil/clinic-a/room-1/ox/spo2")
				add(drivers.Reading{Metric: drivers.PulseRate, Value: 72, Valid: true, Received: at}, "vigil/clinic-a/room-1/ox/pulse_rate")
				add(drivers.Reading{Metric: drivers.PerfusionIndex, Value: 3, Valid: true, Received: at}, "vigil/clinic-a/room-1/ox/perfusion_index")
			}
			for k := 0; k < 3; k++ {
				at := t0.Add(time.Duration(s)*time.Second + time.Duration(k)*time.Second/3)
				add(drivers.Reading{Metric: drivers.Pleth, Samples: samples, SampleRate: 75, Received: at}, "vigil/clinic-a/room-1/ox/pleth")
			}
		}
		if err := w.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		total := int64(seq)
		last, _ := st.LastOutboxID()

		var got atomic.Int64
		all := make(chan struct{})
		sub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("drain-sub"))
		if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		sub.Subscribe("vigil/clinic-a/room-1/ox/+", 1, func(paho.Client, paho.Message) {
			if got.Add(1) == total {
				close(all)
			}
		}).Wait()

		var deleted atomic.Int64
		pub, err := mqtt.New(mqtt.Options{URL: mosq.URL(), Site: "clinic-a", Room: "room-1", ClientID: "drain-pub",
			Logger: slog.New(slog.DiscardHandler), Outbox: outboxAdapter{st}, ReplayThrough: last,
			OnDelivered: func(id int64) { deleted.Add(1); w.DeleteOutbox(id) }})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := pub.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		select {
		case <-all:
		case <-time.After(2 * time.Minute):
			b.Fatalf("%d of %d messages after 2 minutes", got.Load(), total)
		}
		for deleted.Load() < total && time.Since(start) < time.Minute {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(elapsed.Seconds(), "drain-s")
		b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
		closeCtx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		pub.Close(closeCtx)
		c2()
		sub.Disconnect(100)
		cancel()
		<-done
		depth, _, _ := st.OutboxStats()
		if depth != 0 {
			b.Errorf("outbox depth %d after the drain", depth)
		}
		st.Close()
	}
}
