package broker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 20 * time.Second

// syncBuffer is a log destination safe for mochi's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func connect(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestBrokerServesRetainedAndLive(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := Start(t.Context(), "127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q", b.Addr())
	}
	if b.URL() != "tcp://"+b.Addr() {
		t.Errorf("URL() = %q", b.URL())
	}

	pub := connect(t, b.URL(), "publisher")
	if tok := pub.Publish("vigil/s/r/status", 1, true, `{"state":"online"}`); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	got := make(chan paho.Message, 10)
	sub := connect(t, b.URL(), "subscriber")
	if tok := sub.Subscribe("vigil/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m.Topic() != "vigil/s/r/status" || !m.Retained() || string(m.Payload()) != `{"state":"online"}` {
			t.Errorf("retained message %s %q retained=%v", m.Topic(), m.Payload(), m.Retained())
		}
	case <-time.After(waitLimit):
		t.Fatal("no retained message")
	}
	if tok := pub.Publish("vigil/s/r/ox1/spo2", 1, false, `{"value":97}`); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m.Topic() != "vigil/s/r/ox1/spo2" || string(m.Payload()) != `{"value":97}` {
			t.Errorf("live message %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(waitLimit):
		t.Fatal("no live message")
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("broker still accepts connections after Close")
	}

	// mochi's chatter (start-up, listener, hooks) is demoted below Info;
	// our own line is not.
	out := logs.String()
	if strings.Contains(out, "attached listener") || strings.Contains(out, "mochi mqtt starting") {
		t.Errorf("mochi's Info lines logged at Info:\n%s", out)
	}
	if !strings.Contains(out, "embedded MQTT broker listening") {
		t.Errorf("missing start line:\n%s", out)
	}
}

func TestBrokerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b, err := Start(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("broker still listening after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close after cancel: %v", err)
	}
}

func TestStartFirstFree(t *testing.T) {
	// Hold a port so the broker has to move up; one with room above it.
	var taken net.Listener
	for taken == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if l.Addr().(*net.TCPAddr).Port > 65535-8 {
			defer l.Close() // keep it taken so the next try gets another
			continue
		}
		taken = l
	}
	defer taken.Close()
	first := taken.Addr().(*net.TCPAddr).Port

	b, err := StartFirstFree(t.Context(), "127.0.0.1", first, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, portText, _ := net.SplitHostPort(b.Addr())
	port, _ := strconv.Atoi(portText)
	if port <= first || port >= first+8 {
		t.Errorf("broker on port %d, want one of %d..%d", port, first+1, first+7)
	}

	if _, err := StartFirstFree(t.Context(), "127.0.0.1", first, 1, nil); !errors.Is(err, ErrNoFreePort) {
		t.Errorf("only a taken port: %v, want ErrNoFreePort", err)
	}
	if _, err := StartFirstFree(t.Context(), "127.0.0.1", 0, 1, nil); err == nil {
		t.Error("port 0 accepted as a first port")
	}
	if _, err := StartFirstFree(t.Context(), "127.0.0.1", 65535, 2, nil); err == nil {
		t.Error("range past 65535 accepted")
	}
}

func TestStartRejectsBadAddresses(t *testing.T) {
	for _, listen := range []string{"", "127.0.0.1", "127.0.0.1:http-alt", "127.0.0.1:70000", "256.0.0.1:1883"} {
		if b, err := Start(t.Context(), listen, nil); err == nil {
			b.Close()
			t.Errorf("Start(%q) succeeded", listen)
		}
	}
}
