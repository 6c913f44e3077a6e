package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

// BenchmarkEndToEndLatency measures the whole path a reading takes: a Masimo
// line written to a pseudo-terminal, read by a separate `vigil run` process
// through the serial layer, decoded, published at QoS 1 to a real Mosquitto on
// loopback, and received by a subscriber. It reports the p50 and p99 latency
// from the write to the subscriber's receipt, the agent's CPU use in % of one
// core over the run, and its peak RSS.
//
// Each sub-benchmark streams for VIGIL_LATENCY_DURATION (default 60s) at its
// rate whatever b.N is, so run it with -benchtime=1x:
//
//	go test -run='^$' -bench=EndToEndLatency -benchtime=1x ./cmd/vigil/
//
// The agent binary is built without the race detector for this benchmark.
func BenchmarkEndToEndLatency(b *testing.B) {
	duration := 60 * time.Second
	if s := os.Getenv("VIGIL_LATENCY_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("VIGIL_LATENCY_DURATION: %v", err)
		}
		duration = d
	}
	bin := filepath.Join(b.TempDir(), "vigil")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("go build: %v", err)
	}
	for _, rate := range []int{1, 500} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			measureLatency(b, bin, rate, duration)
		})
	}
}

func measureLatency(b *testing.B, bin string, rate int, duration time.Duration) {
	broker := testbroker.StartMosquitto(b)
	master, slave, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()

	dir := b.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`site: bench
room: room-1
devices:
  - id: ox
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
store:
  path: %s
alarms:
  clock_check: false
`, slave.Name(), broker.URL(), filepath.Join(dir, "vigil.db"))), 0o600)
	agent := exec.Command(bin, "run", "--config", cfg, "--log-level", "warn")
	// VIGIL_AGENT_ENV (e.g. "GOMAXPROCS=1") sets the agent's environment
	// only, to compare runtime settings without changing the subscriber.
	agent.Env = append(os.Environ(), strings.Fields(os.Getenv("VIGIL_AGENT_ENV"))...)
	var logs bytes.Buffer
	agent.Stdout, agent.Stderr = &logs, &logs
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		agent.Process.Signal(os.Interrupt)
		agent.Wait()
	}()

	lines := rate * int(duration/time.Second)
	sent := make([]time.Time, lines+1)
	var mu sync.Mutex
	latencies := make([]time.Duration, 0, lines)
	connected := make(chan struct{})
	var once sync.Once
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("latency-sub").SetOrderMatters(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("vigil/bench/room-1/ox/status", 1, func(_ paho.Client, m paho.Message) {
		if strings.Contains(string(m.Payload()), `"connected"`) {
			once.Do(func() { close(connected) })
		}
	}).Wait()
	// Line k (from 1) yields readings seq 3k-2 (spo2), 3k-1 (pulse), 3k (PI).
	sub.Subscribe("vigil/bench/room-1/ox/spo2", 1, func(_ paho.Client, m paho.Message) {
		now := time.Now()
		var p struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(m.Payload(), &p) != nil {
			return
		}
		k := int((p.Seq + 2) / 3)
		mu.Lock()
		defer mu.Unlock()
		if k >= 1 && k <= lines && !sent[k].IsZero() {
			latencies = append(latencies, now.Sub(sent[k]))
		}
	}).Wait()
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		b.Fatalf("agent never connected to the pty:\n%s", logs.String())
	}

	enc := masimoEncoder(b)
	frame := drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72, drivers.PerfusionIndex: 3.5}}
	buf := enc.Encode(nil, frame)
	cpuStart := processCPU(b, agent.Process.Pid)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	for k := 1; k <= lines; k++ {
		next := start.Add(time.Duration(k-1) * interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		mu.Lock()
		sent[k] = time.Now()
		mu.Unlock()
		if _, err := master.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(latencies)
		mu.Unlock()
		if n >= lines {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	elapsed := time.Since(start)
	cpu := processCPU(b, agent.Process.Pid) - cpuStart

	mu.Lock()
	got := slices.Clone(latencies)
	mu.Unlock()
	if len(got) < lines {
		b.Errorf("received %d of %d readings", len(got), lines)
	}
	if len(got) == 0 {
		return
	}
	slices.Sort(got)
	pct := func(p float64) time.Duration { return got[min(len(got)-1, int(p*float64(len(got))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "cpu-%")
	b.ReportMetric(peakRSSMiB(b, agent.Process.Pid), "peak-rss-MiB")
	b.ReportMetric(float64(len(got)), "readings")
}

func masimoEncoder(b *testing.B) drivers.Encoder {
	drv, ok := drivers.Lookup("masimo-ascii")
	if !ok {
		b.Fatal("masimo-ascii not registered")
	}
	enc, err := drv.NewEncoder(nil)
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

// processCPU is the user plus system CPU time a process has used
// (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s on Linux).
func processCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSSMiB reads VmHWM, the process's peak resident set size.
func peakRSSMiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}
