package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

// TestEverySerialDriverEndToEnd runs each registered serial driver's own
// encoder output through a pseudo-terminal, the agent and a real Mosquitto to
// a subscriber: every SpO2 value arrives, in order, with consecutive sequence
// numbers; then the cable is pulled and plugged back and readings resume.
func TestEverySerialDriverEndToEnd(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	for _, name := range drivers.Names() {
		drv, _ := drivers.Lookup(name)
		if drv.Transport != drivers.Serial || drv.NewEncoder == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			ox := newFakeDevice(t, name)
			cfg := testConfigFor(t, name, ox.link, b.URL())
			startAgent(t, cfg)
			sub := subscribe(t, b.URL())
			statusTopic := "vigil/clinic-a/room-1/oximeter-1/status"
			waitFor(t, "connected", 10*time.Second, func() bool {
				m, ok := sub.lastOn(statusTopic)
				return ok && strings.Contains(string(m.payload), `"connected"`)
			})

			// The driver's first metric is checked value by value.
			metric := drv.Metrics[0]
			want := func(i int) float64 {
				if metric == drivers.SpO2 {
					return float64(88 + i%10)
				}
				return float64(120 + i)
			}
			const n = 12
			for i := range n {
				ox.send(fullFrame(want(i), i))
			}
			name := metric.String()
			waitFor(t, "all "+name+" readings", 15*time.Second, func() bool { return len(sub.readings(name)) >= n })
			got := sub.readings(name)
			if len(got) != n {
				t.Fatalf("got %d %s readings, want %d", len(got), name, n)
			}
			for i, r := range got {
				if r.Value == nil || *r.Value != want(i) {
					t.Errorf("%s[%d] = %v, want %v", name, i, r.Value, want(i))
				}
				if i > 0 && r.Seq <= got[i-1].Seq {
					t.Errorf("%s[%d].seq = %d after %d", name, i, r.Seq, got[i-1].Seq)
				}
			}
			checkSeqContinuity(t, sub)

			// Pull the cable once the agent has read everything, plug it back.
			time.Sleep(300 * time.Millisecond)
			ox.unplug()
			waitFor(t, "disconnected", 10*time.Second, func() bool {
				m, ok := sub.lastOn(statusTopic)
				return ok && strings.Contains(string(m.payload), `"disconnected"`)
			})
			ox.plug()
			replugged := time.Now()
			waitFor(t, "connected again", 10*time.Second, func() bool {
				m, ok := sub.lastOn(statusTopic)
				return ok && strings.Contains(string(m.payload), `"connected"`)
			})
			t.Logf("reconnected %s after the replug", time.Since(replugged).Round(time.Millisecond))
			for i := range 3 {
				ox.send(fullFrame(want(i), i))
			}
			waitFor(t, "readings after the replug", 15*time.Second, func() bool { return len(sub.readings(name)) >= n+1 })
			checkSeqContinuity(t, sub)
		})
	}
}

// checkSeqContinuity: across all metrics of the device, the sequence numbers
// received form one unbroken run.
func checkSeqContinuity(t *testing.T, sub *subscriber) {
	t.Helper()
	var seqs []uint64
	for _, m := range sub.snapshot() {
		if strings.HasSuffix(m.topic, "/status") || !strings.Contains(m.topic, "/oximeter-1/") {
			continue // statuses, alarms
		}
		var p payload
		if err := jsonUnmarshal(m.payload, &p); err == nil {
			seqs = append(seqs, p.Seq)
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("sequence gap: %d then %d", seqs[i-1], seqs[i])
			return
		}
	}
}

// fullFrame sets every metric a bedside device may send: the first metric of
// the driver under test carries the checked value v.
func fullFrame(v float64, i int) drivers.Frame {
	f := frame(88+float64(i%10), float64(60+i), 0)
	f.Values[drivers.SpO2] = v
	if v > 100 {
		f.Values[drivers.SpO2] = 97
	}
	f.Values[drivers.NIBPSystolic] = v
	f.Values[drivers.NIBPDiastolic] = 80
	f.Values[drivers.NIBPMean] = 95
	f.Values[drivers.NIBPPulseRate] = 70
	return f
}

// TestContecAutoFindsLegacyDevice: with protocol auto the agent opens the
// port with the v4.6 settings first; a legacy device gives no frame there, so
// after the probe timeout the agent reopens with the legacy settings and its
// readings arrive. (A pty ignores baud rates; what is tested is that the
// agent moves to the next variant and decodes with that variant's decoder.)
func TestContecAutoFindsLegacyDevice(t *testing.T) {
	dev := newFakeDeviceWith(t, "contec-cms50", drivers.Options{"protocol": "legacy"})
	cfg := testConfigFor(t, "contec-cms50", dev.link, "embedded")
	if cfg.Devices[0].Options["protocol"] != nil {
		t.Fatalf("test config should leave protocol at its default (auto)")
	}
	ra := startAgent(t, cfg)
	sub := subscribe(t, ra.ep.MQTT)
	deadline := time.Now().Add(20 * time.Second)
	for len(sub.readings("spo2")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no SpO2 from a legacy Contec under protocol auto within 20s")
		}
		dev.send(frame(94, 75, 0))
		time.Sleep(250 * time.Millisecond)
	}
	if r := sub.readings("spo2")[0]; r.Value == nil || *r.Value != 94 {
		t.Errorf("spo2 = %+v, want 94", r)
	}
}
