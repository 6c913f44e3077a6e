package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

// TestSimulateEverySerialDriver: `vigil simulate DRIVER` plays each serial
// device well enough for `vigil run` to read it: its first metric reaches a
// real Mosquitto with a value. The NIBP module answers the agent's commands,
// so its measurement is started with `vigil nibp start`.
func TestSimulateEverySerialDriver(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	for _, name := range drivers.Names() {
		drv, _ := drivers.Lookup(name)
		if drv.Transport != drivers.Serial {
			continue
		}
		t.Run(name, func(t *testing.T) {
			port := startSimulatorFor(t, name, "normal")
			cmd := startRunDriver(t, name, port, b.URL())
			metric := drv.Metrics[0].String()
			var mu sync.Mutex
			var values []float64
			sub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("sim-" + name))
			if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			defer sub.Disconnect(100)
			sub.Subscribe("vigil/clinic-a/room-1/oximeter-1/"+metric, 1, func(_ paho.Client, m paho.Message) {
				var p struct {
					Value *float64 `json:"value"`
				}
				if json.Unmarshal(m.Payload(), &p) == nil && p.Value != nil {
					mu.Lock()
					values = append(values, *p.Value)
					mu.Unlock()
				}
			}).Wait()
			if drv.NewResponder != nil {
				addr := waitHTTPAddr(t, cmd)
				waitUntil(t, "a measurement started", 20*time.Second, func() bool {
					_, _, code := vigil(t, "nibp", "start", "--device", "oximeter-1", "--addr", addr)
					return code == 0
				})
			}
			// A simulated cuff measurement takes about 30 s, like a real one.
			waitUntil(t, "a "+metric+" value", 75*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(values) > 0
			})
			mu.Lock()
			t.Logf("%s values: %v", metric, values)
			mu.Unlock()
		})
	}
}

func startSimulatorFor(t *testing.T, driver, scenario string) string {
	t.Helper()
	prev := simulatorDriver
	simulatorDriver = driver
	defer func() { simulatorDriver = prev }()
	return startSimulator(t, scenario)
}

// startRunDriver runs `vigil run` on one device of the given driver; its
// logs are JSON so the HTTP address can be read from them.
func startRunDriver(t *testing.T, driver, port, brokerURL string) *runningProcess {
	t.Helper()
	return startRunConfig(t, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: %s
    port: %s
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
`, driver, port, brokerURL))
}

// waitHTTPAddr reads the agent's HTTP address from its "vigil running" log.
func waitHTTPAddr(t *testing.T, p *runningProcess) string {
	t.Helper()
	var addr string
	waitUntil(t, "the agent's HTTP address in its log", 20*time.Second, func() bool {
		for _, line := range strings.Split(p.logs(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "vigil running" && rec.HTTP != "" {
				addr = rec.HTTP
				return true
			}
		}
		return false
	})
	return addr
}

// TestSimulateHL7Monitor: `vigil simulate hl7-mllp` pushes a scenario to a
// running agent over MLLP, and its vitals reach Mosquitto as the configured
// monitor's readings.
func TestSimulateHL7Monitor(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	startRunConfig(t, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: monitor-1
    driver: hl7-mllp
    listen: %s
    sender: SIM-MONITOR-1
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
`, listen, b.URL()))
	got := make(chan string, 10)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("sim-hl7"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("vigil/clinic-a/room-1/monitor-1/spo2", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	}).Wait()

	sim := exec.Command(vigilBin, "simulate", "hl7-mllp", "--connect", listen, "--option", "sender=SIM-MONITOR-1", "--rate", "2")
	var simOut bytes.Buffer
	sim.Stdout, sim.Stderr = &simOut, &simOut
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sim.Process.Signal(syscall.SIGTERM)
		sim.Wait()
	}()
	select {
	case p := <-got:
		if !strings.Contains(p, `"device":"monitor-1"`) || !strings.Contains(p, `"value":9`) {
			t.Errorf("reading = %s", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no SpO2 from the simulated monitor within 20s; simulator output:\n%s", simOut.String())
	}
}
