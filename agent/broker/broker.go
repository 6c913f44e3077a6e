// Package broker runs the embedded MQTT broker (mochi-mqtt) for the demo and
// for a single room without its own Mosquitto. It listens on plain TCP and
// admits any client, so it must only listen on loopback or a trusted
// network; production points the agent at a real broker instead.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listenerID names the one TCP listener in mochi's registry.
const listenerID = "vigil-tcp"

// ErrNoFreePort is returned by StartFirstFree when every port tried is taken.
var ErrNoFreePort = errors.New("broker: no free port")

// Broker is a running embedded broker.
type Broker struct {
	server    *mochi.Server
	addr      string
	stopOnce  sync.Once
	stop      chan struct{} // closed by Close: ends the context watcher
	stopped   chan struct{} // closed when the context watcher has returned
	closeOnce sync.Once
	closeErr  error
}

// Start listens on listen (host:port; port 0 picks a free one) and serves
// until Close or until ctx ends. It returns once the listener is bound, so
// clients can connect as soon as it returns.
func Start(ctx context.Context, listen string, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("broker: listen address %q: %w", listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("broker: listen address %q: port: %w", listen, err)
	}

	server := mochi.New(&mochi.Options{
		Logger: slog.New(&quieterHandler{next: logger.With(slog.String("component", "broker")).Handler()}),
		// The agent does not publish through the broker's inline client.
		InlineClient: false,
	})
	if err := server.AddHook(new(allowLocal), nil); err != nil {
		return nil, fmt.Errorf("broker: allowing local clients: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: listenerID, Address: net.JoinHostPort(host, port)})
	if err := server.AddListener(tcp); err != nil { // binds the port
		return nil, fmt.Errorf("broker: listening on %s: %w", listen, err)
	}
	if err := server.Serve(); err != nil {
		_ = server.Close()
		return nil, fmt.Errorf("broker: serving: %w", err)
	}
	b := &Broker{
		server:  server,
		addr:    tcp.Address(),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go b.watch(ctx)
	logger.Info("embedded MQTT broker listening", slog.String("addr", b.addr))
	return b, nil
}

// StartFirstFree starts the broker on host:firstPort, or on the next port up
// when that one is taken, trying at most tries ports. Other errors are
// returned at once.
func StartFirstFree(ctx context.Context, host string, firstPort, tries int, logger *slog.Logger) (*Broker, error) {
	if firstPort < 1 || tries < 1 || firstPort+tries-1 > 65535 {
		return nil, fmt.Errorf("broker: ports %d..%d: not a valid range", firstPort, firstPort+tries-1)
	}
	for port := firstPort; port < firstPort+tries; port++ {
		b, err := Start(ctx, net.JoinHostPort(host, strconv.Itoa(port)), logger)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %s ports %d..%d are all in use", ErrNoFreePort, host, firstPort, firstPort+tries-1)
}

// Addr is the address the broker listens on, host:port.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's address for MQTT clients, tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Close disconnects every client, stops listening and waits for the
// broker's client goroutines. Calling it again returns the first result.
func (b *Broker) Close() error {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.stopped
	b.closeServer()
	return b.closeErr
}

func (b *Broker) closeServer() {
	b.closeOnce.Do(func() { b.closeErr = b.server.Close() })
}

// watch closes the broker when ctx ends, and returns when Close is called.
func (b *Broker) watch(ctx context.Context) {
	defer close(b.stopped)
	select {
	case <-ctx.Done():
		b.closeServer()
	case <-b.stop:
	}
}

// allowLocal admits every client and lets it publish and subscribe to every
// topic: mochi denies everything without an auth hook. mochi's own
// auth.AllowHook is not used because its package imports gopkg.in/yaml.v3,
// which this module does not carry.
type allowLocal struct {
	mochi.HookBase
}

func (h *allowLocal) ID() string { return "vigil-allow-local" }

func (h *allowLocal) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowLocal) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowLocal) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// quieterHandler lowers mochi's log levels by one step: mochi logs every
// start, listener and hook at Info and every client that drops its
// connection at Warn. Its Info becomes Debug, Warn becomes Info; errors stay
// errors.
type quieterHandler struct {
	next slog.Handler
}

func quieter(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelError:
		return l
	case l >= slog.LevelWarn:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

func (h *quieterHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, quieter(l))
}

func (h *quieterHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, quieter(r.Level), r.Message, r.PC)
	if out.Message == "" {
		// mochi's listener logs a client's failed connection without a message.
		out.Message = "client connection ended"
	}
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *quieterHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quieterHandler{next: h.next.WithAttrs(attrs)}
}

func (h *quieterHandler) WithGroup(name string) slog.Handler {
	return &quieterHandler{next: h.next.WithGroup(name)}
}
