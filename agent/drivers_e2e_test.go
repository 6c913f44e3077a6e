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

			const n = 12
			for i := range n {
				ox.send(frame(float64(88+i%10), float64(60+i), 0))
			}
			waitFor(t, "all SpO2 readings", 15*time.Second, func() bool { return len(sub.readings("spo2")) >= n })
			spo2 := sub.readings("spo2")
			if len(spo2) != n {
				t.Fatalf("got %d SpO2 readings, want %d", len(spo2), n)
			}
			for i, r := range spo2 {
				if r.Value == nil || *r.Value != float64(88+i%10) {
					t.Errorf("spo2[%d] = %v, want %d", i, r.Value, 88+i%10)
				}
				if i > 0 && r.Seq <= spo2[i-1].Seq {
					t.Errorf("spo2[%d].seq = %d after %d", i, r.Seq, spo2[i-1].Seq)
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
			for range 3 {
				ox.send(frame(95, 70, 0))
			}
			waitFor(t, "readings after the replug", 15*time.Second, func() bool { return len(sub.readings("spo2")) >= n+1 })
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
		if strings.HasSuffix(m.topic, "/status") {
			continue
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
