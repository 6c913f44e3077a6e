package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all"
)

// TestReadingsCommittedBeforeSIGKILLArriveAfterRestart: the broker goes
// away while an oximeter streams at 10 lines a second, so readings wait in
// the outbox; the agent is then killed with SIGKILL. Every reading the
// store had committed at the kill arrives once the broker and the agent
// are back (the ones that waited marked "replayed"), and the sequence goes
// on from the last committed one.
func TestReadingsCommittedBeforeSIGKILLArriveAfterRestart(t *testing.T) {
	mosq := testbroker.StartMosquitto(t, testbroker.WithPersistence())
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	drv, _ := drivers.Lookup("masimo-ascii")
	enc, err := drv.NewEncoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	line := func(n int) []byte {
		return enc.Encode(nil, drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{drivers.SpO2: float64(90 + n%8), drivers.PulseRate: 70, drivers.PerfusionIndex: 3}})
	}

	var (
		mu       sync.Mutex
		received = map[uint64]bool{}
		replayed = map[uint64]bool{}
	)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(mosq.URL()).SetClientID("kill-test-subscriber").
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("vigil/clinic-a/room-1/ox/+", 1, func(_ paho.Client, m paho.Message) {
		var p struct {
			Seq      uint64 `json:"seq"`
			Replayed bool   `json:"replayed"`
		}
		if json.Unmarshal(m.Payload(), &p) != nil || p.Seq == 0 {
			return
		}
		mu.Lock()
		received[p.Seq] = true
		if p.Replayed {
			replayed[p.Seq] = true
		}
		mu.Unlock()
	}).Wait()

	dbPath := filepath.Join(t.TempDir(), "vigil.db")
	yaml := fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: ox
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
alarms:
  clock_check: false
store:
  path: %s
`, slave.Name(), mosq.URL(), dbPath)
	agent := startRunConfig(t, yaml)
	waitUntil(t, "the first readings", 20*time.Second, func() bool {
		master.Write(line(0))
		mu.Lock()
		defer mu.Unlock()
		return len(received) > 0
	})

	// Stream; the broker goes away after 2 s, the agent is killed 2 s later.
	start := time.Now()
	brokerUp := true
	for n := 1; time.Since(start) < 4*time.Second; n++ {
		if brokerUp && time.Since(start) > 2*time.Second {
			mosq.Stop()
			brokerUp = false
		}
		master.Write(line(n))
		time.Sleep(100 * time.Millisecond)
	}
	agent.Process.Kill()
	agent.Wait()

	st, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	committed, err := st.Readings(store.ReadingQuery{Devices: []string{"ox"}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i, r := range committed {
		if r.Seq != uint64(i+1) {
			t.Fatalf("committed readings: seq %d at position %d (a gap in the store)", r.Seq, i)
		}
		last = r.Seq
	}
	mu.Lock()
	var waiting []uint64
	for s := uint64(1); s <= last; s++ {
		if !received[s] {
			waiting = append(waiting, s)
		}
	}
	mu.Unlock()
	t.Logf("%d readings committed at the kill, %d of them not yet delivered", last, len(waiting))
	if len(waiting) == 0 {
		t.Fatal("no reading was waiting in the outbox at the kill: the test proves nothing")
	}

	mosq.Start()
	startRunConfig(t, yaml)
	waitUntil(t, "every committed reading delivered", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for s := uint64(1); s <= last; s++ {
			if !received[s] {
				return false
			}
		}
		return true
	})
	mu.Lock()
	for _, s := range waiting {
		if !replayed[s] {
			t.Errorf("seq %d, sent after the restart, is not marked replayed", s)
			break
		}
	}
	mu.Unlock()

	// The sequence continues after the last committed reading.
	waitUntil(t, "a new reading after the restart", 20*time.Second, func() bool {
		master.Write(line(0))
		mu.Lock()
		defer mu.Unlock()
		return received[last+1]
	})
	mu.Lock()
	defer mu.Unlock()
	if replayed[last+1] {
		t.Errorf("seq %d, taken after the restart, is marked replayed", last+1)
	}
}
