package agent_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestHL7WorkedExampleEndToEnd: the worked example of protocols.md 5.2 (a
// Comen monitor's ORU^R01), pushed over MLLP, is acknowledged with AA and its
// vital signs reach a real Mosquitto as the configured device's readings; a
// message from a monitor nobody configured gets AE and publishes nothing.
func TestHL7WorkedExampleEndToEnd(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	listen := freeAddr(t)
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: monitor-1
    driver: hl7-mllp
    listen: %s
    sender: KC261551373G
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
`, listen, b.URL())))
	if err != nil {
		t.Fatal(err)
	}
	ra := startAgent(t, cfg)
	sub := subscribe(t, b.URL())
	msg, err := os.ReadFile("../drivers/hl7/testdata/comen-nc-series.bin")
	if err != nil {
		t.Fatal(err)
	}

	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ack := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(got, []byte{0x1c, 0x0d}) {
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("reading the ACK: %v (got %q)", err, got)
			}
			got = append(got, buf[:n]...)
		}
		return string(got)
	}
	conn.Write(msg)
	if a := ack(); !strings.Contains(a, "MSA|AA|202506100151270003") {
		t.Errorf("ACK = %q, want AA for control id 202506100151270003", a)
	}
	want := map[string]float64{"spo2": 97, "pulse_rate": 59, "respiration_rate": 20, "nibp_systolic": 120, "nibp_diastolic": 80, "nibp_mean": 90}
	waitFor(t, "the monitor's readings", 10*time.Second, func() bool {
		for m := range want {
			if len(sub.readings(m)) == 0 {
				return false
			}
		}
		return true
	})
	for m, v := range want {
		r := sub.readings(m)
		if len(r) != 1 || r[0].Value == nil || *r[0].Value != v || r[0].Device != "monitor-1" {
			t.Errorf("%s: %+v, want one reading of %v from monitor-1", m, r, v)
		}
	}
	m, ok := sub.lastOn("vigil/clinic-a/room-1/monitor-1/status")
	if !ok || !strings.Contains(string(m.payload), `"connected"`) {
		t.Errorf("monitor status = %s", m.payload)
	}

	// The same message from another monitor: refused, counted, not published.
	other := bytes.Replace(msg, []byte("KC261551373G"), []byte("XX000000000X"), -1)
	conn.Write(other)
	if a := ack(); !strings.Contains(a, "MSA|AE|") || !strings.Contains(a, "unknown sender") {
		t.Errorf("ACK for an unknown sender = %q, want AE naming it", a)
	}
	_, body := httpGet(t, ra.ep.HTTP+"/metrics")
	for _, want := range []string{
		`vigil_hl7_rejected_total{reason="unknown_sender",room="room-1",site="clinic-a"} 1`,
		`vigil_hl7_unknown_codes_total{code="MDC:150344",room="room-1",site="clinic-a"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "vigil_hl7"))
		}
	}
	if len(sub.readings("spo2")) != 1 {
		t.Errorf("an unknown sender's reading was published")
	}

	conn.Close()
	waitFor(t, "disconnected after the monitor hangs up", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/monitor-1/status")
		return ok && strings.Contains(string(m.payload), `"disconnected"`)
	})
}
