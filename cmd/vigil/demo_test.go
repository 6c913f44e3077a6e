package main

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestDemo runs `vigil demo` as a new user would: within seconds the printed
// metrics URL serves SpO2 and the printed broker carries readings; Ctrl-C
// stops it with exit 0.
func TestDemo(t *testing.T) {
	cmd := exec.Command(vigilBin, "demo")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	lines := lineReader(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", stderr.String())
		}
	}()

	var metricsURL, watch string
	deadline := time.After(30 * time.Second)
	for metricsURL == "" || watch == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("demo exited early")
			}
			if m := regexp.MustCompile(`metrics:\s+(http://\S+/metrics)`).FindStringSubmatch(l); m != nil {
				metricsURL = m[1]
			}
			if strings.Contains(l, "mosquitto_sub") {
				watch = l
			}
		case <-deadline:
			t.Fatal("demo printed no metrics URL and mosquitto_sub command within 30s")
		}
	}
	m := regexp.MustCompile(`-h (\S+) -p (\d+)`).FindStringSubmatch(watch)
	if m == nil {
		t.Fatalf("cannot parse %q", watch)
	}

	got := make(chan string, 10)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + m[1] + ":" + m[2]).SetClientID("demo-test"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	sub.Subscribe("vigil/demo/room-1/oximeter-1/spo2", 1, func(_ paho.Client, msg paho.Message) {
		select {
		case got <- string(msg.Payload()):
		default:
		}
	}).Wait()
	select {
	case p := <-got:
		if !strings.Contains(p, `"metric":"spo2"`) {
			t.Errorf("demo reading = %s", p)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no SpO2 reading on the demo's broker within 15s")
	}

	waitUntil(t, "vigil_spo2_ratio on the demo's /metrics", 15*time.Second, func() bool {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`(?m)^vigil_spo2_ratio\{device="oximeter-1",room="room-1",site="demo"\} 0\.9\d`).Match(b)
	})

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo after Ctrl-C: %v, want exit 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop within 20s of SIGINT")
	}
}
