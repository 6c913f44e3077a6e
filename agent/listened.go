package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/hl7server"
	"github.com/vigil-monitor/vigil/drivers"
)

// Devices that connect to the agent (drivers.TCPListen: HL7 monitors) share
// the device type's state, silence watchdog and reporting with serial
// devices; their bytes are decoded by the listener, which hands each
// device's readings to a lockedSink.

// lockedSink feeds a device's pipeline from the listener's goroutines under
// the device's lock, as Data does for serial devices.
type lockedSink struct{ d *device }

func (s lockedSink) Reading(r drivers.Reading) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.d.feedTime = r.Received
	s.d.pipe.Reading(r)
}

func (s lockedSink) Frame(result drivers.FrameResult, dropped int) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.feedTime.IsZero() {
		s.d.feedTime = time.Now()
	}
	s.d.pipe.Frame(result, dropped)
}

// remoteStatus is the listener's report that a device's monitor connected
// (its first message) or that its last connection closed.
func (d *device) remoteStatus(connected bool, now time.Time, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if connected {
		d.connects++
		if d.connects > 1 && d.reconnected != nil {
			d.reconnected(d.id)
		}
		d.lastFrame = now
		d.logger.Info("monitor connected", "device", d.id)
		d.setState(devstatus.Connected, now, "")
		return
	}
	d.logger.Warn("monitor disconnected", "device", d.id, "reason", reason)
	d.setState(devstatus.Disconnected, now, reason)
}

// runListened runs a device whose monitor connects to the agent: only its
// silence watchdog; the listener delivers its data.
func (d *device) runListened(ctx context.Context) {
	d.mu.Lock()
	d.runCtx = ctx
	// Until its monitor connects, the device is not connected.
	d.setState(devstatus.Disconnected, time.Now(), "waiting for the monitor to connect")
	d.mu.Unlock()
	d.watch(ctx)
}

// hl7Counters count what the HL7 listeners refuse or cannot map.
type hl7Counters struct {
	unknownCodes *prometheus.CounterVec
	rejected     *prometheus.CounterVec
}

func newHL7Counters(reg prometheus.Registerer, site, room string) *hl7Counters {
	labels := prometheus.Labels{"site": site, "room": room}
	c := &hl7Counters{
		unknownCodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vigil_hl7_unknown_codes_total",
			Help:        "HL7 OBX observations with a code Vigil has no metric for, by code (never dropped silently).",
			ConstLabels: labels,
		}, []string{"code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vigil_hl7_rejected_total",
			Help:        "HL7 messages or bytes refused, by reason (unknown_sender, parse_error, unsupported_type, framing).",
			ConstLabels: labels,
		}, []string{"reason"}),
	}
	reg.MustRegister(c.unknownCodes, c.rejected)
	for _, r := range hl7server.RejectReasons() {
		c.rejected.WithLabelValues(r)
	}
	return c
}

// startListeners opens one HL7 listener per listen address, for the devices
// that name it. The listeners are bound before the agent reports ready.
func startListeners(devices []*device, counters *hl7Counters, logger *slog.Logger) ([]*hl7server.Server, error) {
	byAddr := map[string][]hl7server.Device{}
	var order []string
	for _, d := range devices {
		listen, _ := d.options["listen"].(string)
		sender, _ := d.options["sender"].(string)
		if _, ok := byAddr[listen]; !ok {
			order = append(order, listen)
		}
		byAddr[listen] = append(byAddr[listen], hl7server.Device{ID: d.id, Sender: sender, Sink: lockedSink{d}})
	}
	byID := map[string]*device{}
	for _, d := range devices {
		byID[d.id] = d
	}
	var servers []*hl7server.Server
	for _, addr := range order {
		srv, err := hl7server.Listen(hl7server.Options{
			Listen:  addr,
			Devices: byAddr[addr],
			OnStatus: func(id string, connected bool, now time.Time, reason string) {
				if d := byID[id]; d != nil {
					d.remoteStatus(connected, now, reason)
				}
			},
			OnUnknownCode: func(code string) { counters.unknownCodes.WithLabelValues(code).Inc() },
			OnRejected:    func(reason string) { counters.rejected.WithLabelValues(reason).Inc() },
			Logger:        logger,
		})
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return nil, fmt.Errorf("HL7 listener on %s: %w", addr, err)
		}
		logger.Info("HL7 listener ready", "addr", srv.Addr(), "devices", len(byAddr[addr]))
		servers = append(servers, srv)
	}
	return servers, nil
}
