// Package agent runs Vigil: it keeps the configured devices connected, sends
// every reading through the pipeline to MQTT and Prometheus, and serves the
// HTTP endpoints. It knows nothing of byte formats: drivers decode.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/broker"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/filemode"
	"github.com/vigil-monitor/vigil/agent/httpserver"
	"github.com/vigil-monitor/vigil/agent/metrics"
	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/agent/sdnotify"
	"github.com/vigil-monitor/vigil/agent/serialport"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
)

// Options are the parts of a run that do not come from the config file.
type Options struct {
	Logger   *slog.Logger
	Version  string
	Revision string
	// EmbeddedBrokerNextFree lets the embedded broker take the next free port
	// when mqtt.listen's is taken (the demo); a daemon fails instead, since
	// clients are configured with a fixed port.
	EmbeddedBrokerNextFree bool
	// OnReady is called once every listener is bound and devices start.
	OnReady func(Endpoints)
}

// Endpoints are the addresses a running agent serves.
type Endpoints struct {
	HTTP string // http://host:port
	MQTT string // tcp://host:port of the broker in use
	// Embedded is true when MQTT is the agent's own broker.
	Embedded bool
}

// watchdogStallLimit is how long a loop may go without a turn before the
// systemd watchdog stops being pinged: above the longest healthy turn (a
// device's watch ticks every quarter of its silence limit, at most a few
// seconds; the publisher may wait 5 s inside a write) and below the unit's
// WatchdogSec=30.
const watchdogStallLimit = 20 * time.Second

// shutdownTimeout bounds the clean stop: the offline status and in-flight
// messages get this long to reach the broker.
const shutdownTimeout = 5 * time.Second

// Run runs the agent until ctx ends, then stops cleanly: devices closed, the
// offline status published, listeners closed. It returns nil on a clean stop
// and an error when something could not start.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if o.Version == "" {
		o.Version = "dev"
	}

	// Secrets readable by every account on the machine are a finding the
	// IT person must hear about at every start (not an error: the agent
	// must still monitor).
	for _, p := range append([]string{cfg.File}, cfg.SecretFiles()...) {
		if p == "" {
			continue
		}
		if w, ok := filemode.CheckPrivate(p); !ok {
			logger.Warn(w)
		}
	}

	specs, err := resolveDevices(cfg)
	if err != nil {
		return err
	}

	// The broker, the publisher and the HTTP server outlive ctx: at a stop
	// the devices close first, then the offline status is published, and
	// only then does the infrastructure stop.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	var ep Endpoints
	mqttURL := cfg.MQTT.URL
	var embedded *broker.Broker
	if mqttURL == "embedded" {
		if o.EmbeddedBrokerNextFree {
			host, port, err := splitHostPortNumber(cfg.MQTT.Listen)
			if err != nil {
				return fmt.Errorf("mqtt.listen: %w", err)
			}
			embedded, err = broker.StartFirstFree(runCtx, host, port, 20, logger)
			if err != nil {
				return err
			}
		} else {
			embedded, err = broker.Start(runCtx, cfg.MQTT.Listen, logger)
			if err != nil {
				return fmt.Errorf("embedded MQTT broker on %s: %w", cfg.MQTT.Listen, err)
			}
		}
		defer embedded.Close()
		mqttURL = embedded.URL()
		ep.Embedded = true
	}
	ep.MQTT = mqttURL

	devices := map[string]*device{}
	metricDevices := make([]metrics.Device, 0, len(specs))
	for _, s := range specs {
		metricDevices = append(metricDevices, metrics.Device{ID: s.cfg.ID, Metrics: s.driver.Metrics})
	}
	m := metrics.New(metrics.Options{
		Site:           cfg.Site,
		Room:           cfg.Room,
		Devices:        metricDevices,
		StaleAfter:     cfg.Metrics.StaleAfter,
		NIBPStaleAfter: cfg.Metrics.NIBPStaleAfter,
		StaleAfterFor:  staleOverrides(cfg),
		Version:        o.Version,
		Revision:       o.Revision,
	})

	// The store: every reading and alarm event is committed to its outbox
	// before it is published. When it cannot be opened, monitoring goes on
	// without it (published live, not durable) and the storage alarm says so.
	st, stErr := openStore(cfg.Store, logger)
	var (
		replayThrough int64
		lastSeq       map[string]uint64
		writer        *store.Writer
		rec           *storeRecorder
	)
	if stErr != nil {
		logger.Error("store cannot be opened: readings are published but not recorded, and not kept across broker outages", "path", cfg.Store.Path, "err", stErr)
		st = nil
	} else {
		defer st.Close()
		if replayThrough, err = st.LastOutboxID(); err != nil {
			return err
		}
		if lastSeq, err = st.LastSeq(); err != nil {
			return err
		}
		logger.Info("store open", "path", st.Path(), "replay_through_outbox_id", replayThrough)
	}

	// al is made after the publisher (it publishes through it); the
	// publisher calls into it only once started, after al is set. So is
	// sess.
	var (
		al   *alarms
		sess *sessions
	)
	// The systemd watchdog is pinged only while the device loops, the
	// alarm loop and the publisher go round (sdnotify): a wedged agent is
	// restarted, an unplugged device is not (it is a technical alarm).
	beats := sdnotify.NewHeartbeats(nil)
	pubOpts := mqtt.Options{
		URL:          mqttURL,
		FailoverURLs: cfg.MQTT.FailoverURLs,
		ClientID:     cfg.MQTT.ClientID,
		Username:     cfg.MQTT.Username,
		Password:     cfg.MQTT.Password,
		CAFile:       cfg.MQTT.CAFile,
		CertFile:     cfg.MQTT.CertFile,
		KeyFile:      cfg.MQTT.KeyFile,
		TopicPrefix:  cfg.MQTT.TopicPrefix,
		Site:         cfg.Site,
		Room:         cfg.Room,
		Version:      o.Version,
		KeepAlive:    cfg.MQTT.KeepAlive,
		Logger:       logger,
		OnConnectionChange: func(up bool) {
			m.SetMQTTConnected(up)
			al.mqttConnection(up)
		},
		OnPublishError: func(error) { m.MQTTPublishError() },
		Heartbeat:      func() { beats.Beat("publisher") },
		// devices is complete before the publisher starts, and never
		// changes after: the command goroutine only reads it.
		OnCommand: func(id, command string) error {
			d, ok := devices[id]
			if !ok {
				return ErrUnknownDevice
			}
			logger.Info("device command requested", "device", id, "command", command, "via", "mqtt")
			return d.command(command, time.Now())
		},
		OnAlarmCommand:   func(c mqtt.AlarmCommand) error { return al.alarmCommand(c) },
		OnSessionCommand: func(c mqtt.SessionCommand) error { return sess.command(c) },
	}
	if st != nil {
		pubOpts.Outbox = outboxSource{st}
		pubOpts.ReplayThrough = replayThrough
		pubOpts.OnDelivered = func(id int64) { writer.DeleteOutbox(id) }
	}
	pub, err := mqtt.New(pubOpts)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}

	al, err = newAlarms(cfg, pub, m.Registry(), logger)
	if err != nil {
		return fmt.Errorf("alarms: %w", err)
	}
	if st != nil {
		writer = st.NewWriter(store.WriterOptions{
			OnCommit: func(entries []store.OutboxEntry) {
				msgs := make([]mqtt.OutboxMessage, len(entries))
				for i, e := range entries {
					msgs[i] = mqtt.OutboxMessage{ID: e.ID, Topic: e.Topic, Payload: e.Payload, Retained: e.Retained}
				}
				pub.OutboxCommitted(msgs)
				rec.committed()
				al.setStorage("store", true)
			},
			OnError: func(err error) {
				logger.Error("store commit failed; retrying", "err", err)
				rec.commitFailed()
				al.setStorage("store", false)
				if errors.Is(err, store.ErrStoreFull) {
					// Make room: the oldest readings go first (retention
					// under pressure), never the outbox unless nothing else.
					if _, err := st.Prune(time.Now()); err != nil {
						logger.Error("store not pruned", "err", err)
					}
				}
			},
		})
		rec = &storeRecorder{w: writer, pub: pub, site: cfg.Site, room: cfg.Room, al: al, logger: logger}
		al.recordEvent = rec.alarmEvent
		al.auditStore = rec.audit
	} else {
		al.setStorage("store", false)
	}
	var sessStore sessionStore
	var sessRecords sessionRecords
	if st != nil {
		sessStore, sessRecords = st, st
	}
	sess, err = newSessions(cfg, al, pub, sessStore, devices, logger)
	if err != nil {
		return err
	}
	sess.readings = sessRecords
	newStoreMetrics(m.Registry(), cfg.Site, cfg.Room, st, writer, sess)

	// Every device exists before anything that may address it starts.
	var listened []*device
	for _, s := range specs {
		statuses := []StatusConsumer{m, pub, al}
		readings := []ReadingConsumer{m, pub, al, sess}
		if rec != nil {
			// Readings reach MQTT through the store's outbox.
			statuses = append(statuses, rec)
			readings = []ReadingConsumer{m, rec, al, sess}
		}
		d := newDevice(s, statuses, m.Reconnected, logger)
		beatName := "device/" + s.cfg.ID
		d.beat = func() { beats.Beat(beatName) }
		d.pipe = &pipeline{
			device:       s.cfg.ID,
			seq:          lastSeq[s.cfg.ID],
			session:      sess.sessionID,
			consumers:    readings,
			frames:       m,
			onFrame:      d.frameSeen,
			onConditions: d.conditionsChanged,
		}
		devices[d.id] = d
		if s.driver.Transport == drivers.TCPListen {
			listened = append(listened, d)
		}
	}

	srv, err := httpserver.New(httpserver.Options{
		Listen:        cfg.HTTP.Listen,
		WebConfigFile: cfg.HTTP.WebConfigFile,
		Registry:      m.Registry(),
		Ready: func() error {
			if !pub.Connected() {
				return errors.New("MQTT broker not connected")
			}
			return nil
		},
		Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	ep.HTTP = srv.URL()

	// The writer runs from before the first reading to after the last
	// (its own context: it commits what is queued when it stops).
	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriter()
	writerDone := make(chan struct{})
	if writer != nil {
		go func() {
			defer close(writerDone)
			writer.Run(writerCtx)
		}()
	} else {
		close(writerDone)
	}

	if err := pub.Start(runCtx); err != nil {
		srv.Close()
		return fmt.Errorf("mqtt: %w", err)
	}
	sess.restore()

	var wg sync.WaitGroup
	errs := make(chan error, 1+len(specs))

	// Devices stop on their own context so they are closed before the
	// publisher says offline: no reading is taken that cannot be sent.
	devCtx, stopDevices := context.WithCancel(ctx)
	defer stopDevices()
	var devWG sync.WaitGroup
	for _, d := range devices {
		if d.driver.Transport == drivers.TCPListen {
			continue
		}
		devWG.Add(1)
		go func() {
			defer devWG.Done()
			if err := d.run(devCtx); err != nil {
				errs <- fmt.Errorf("device %s: %w", d.id, err)
			}
		}()
	}
	if len(listened) > 0 {
		servers, err := startListeners(listened, newHL7Counters(m.Registry(), cfg.Site, cfg.Room), logger)
		if err != nil {
			stopDevices()
			devWG.Wait()
			pub.Close(context.Background())
			srv.Close()
			return err
		}
		for _, d := range listened {
			devWG.Add(1)
			go func() {
				defer devWG.Done()
				d.runListened(devCtx)
			}()
		}
		for _, hs := range servers {
			devWG.Add(1)
			go func() {
				defer devWG.Done()
				if err := hs.Serve(devCtx); err != nil {
					errs <- fmt.Errorf("HL7 listener %s: %w", hs.Addr(), err)
				}
			}()
		}
	}
	srv.Handle("POST /api/v1/devices/{device}/commands/{command}", commandHandler(devices, logger))
	srv.Handle("GET /api/v1/alarms", al.listHandler())
	srv.Handle("POST /api/v1/alarms/ack/{alarm...}", al.ackHandler())
	if al.links != nil {
		// The links carry their own signed tokens: a phone has no
		// basic-auth credentials (TLS still applies).
		srv.HandlePublic("/ack/", al.links.Handler())
	}
	srv.Handle("GET /api/v1/alarms/pause", al.pauseHandler())
	srv.Handle("POST /api/v1/alarms/pause", al.pauseHandler())
	srv.Handle("POST /api/v1/alarms/resume", al.pauseHandler())
	srv.Handle("GET /api/v1/session", sess.currentHandler())
	srv.Handle("POST /api/v1/session/{action}", sess.changeHandler())
	srv.Handle("GET /api/v1/sessions", sess.listHandler())
	srv.Handle("GET /api/v1/sessions/{id}", sess.listHandler())
	srv.Handle("GET /api/v1/sessions/{id}/export", sess.exportHandler(cfg.Site))
	srv.Handle("GET /api/v1/sessions/{id}/report", sess.exportHandler(cfg.Site))
	// Alarms, sessions and store maintenance stop after the devices and
	// before the writer, so their last entries are committed.
	watchdogCtx, stopWatchdog := context.WithCancel(runCtx)
	defer stopWatchdog()
	al.beat = func() { beats.Beat("alarms") }
	alarmCtx, stopAlarms := context.WithCancel(runCtx)
	defer stopAlarms()
	var alarmWG sync.WaitGroup
	alarmWG.Add(2)
	go func() {
		defer alarmWG.Done()
		al.run(alarmCtx)
	}()
	go func() {
		defer alarmWG.Done()
		sess.run(alarmCtx)
	}()
	if st != nil {
		dropped := newOutboxDroppedCounter(m.Registry(), cfg.Site, cfg.Room)
		alarmWG.Add(1)
		go func() {
			defer alarmWG.Done()
			maintain(alarmCtx, st, al, dropped, logger)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(runCtx); err != nil {
			errs <- fmt.Errorf("http: %w", err)
		}
	}()
	logger.Info("vigil running", "site", cfg.Site, "room", cfg.Room, "devices", len(specs), "http", ep.HTTP, "mqtt", ep.MQTT)
	wd, err := sdnotify.NewWatchdog(beats.Check(watchdogStallLimit), logger)
	if err != nil {
		logger.Error("systemd watchdog settings unusable; not pinging it", "err", err)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wd.Run(watchdogCtx)
		}()
	}
	if _, err := sdnotify.Ready(); err != nil {
		logger.Warn("systemd readiness not sent", "err", err)
	}
	if o.OnReady != nil {
		o.OnReady(ep)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		logger.Error("stopping after a failure", "err", runErr)
	}

	logger.Info("stopping")
	if _, err := sdnotify.Stopping(); err != nil {
		logger.Warn("systemd stopping not sent", "err", err)
	}
	stopWatchdog() // loops end on purpose from here on
	al.stop()
	stopDevices()
	devWG.Wait()
	stopAlarms()
	alarmWG.Wait()
	// Everything taken is committed before the publisher's last drain; the
	// writer keeps running through it to delete what the broker
	// acknowledges. What is not acknowledged in time stays in the outbox
	// for the next run.
	closeCtx, closeCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer closeCancel()
	if writer != nil {
		if err := writer.Flush(closeCtx); err != nil {
			logger.Error("store: readings still queued at stop", "err", err)
		}
	}
	if err := pub.Close(closeCtx); err != nil {
		logger.Warn("MQTT close", "err", err)
	}
	stopWriter()
	<-writerDone
	cancel()
	wg.Wait()
	logger.Info("stopped")
	return runErr
}

type deviceSpec struct {
	cfg      config.Device
	driver   *drivers.Driver
	target   serialport.Target
	variants []drivers.LinkVariant
}

func newDevice(s deviceSpec, statuses []StatusConsumer, reconnected func(string), logger *slog.Logger) *device {
	d := &device{
		id:          s.cfg.ID,
		driver:      s.driver,
		options:     s.cfg.Options,
		target:      s.target,
		variants:    s.variants,
		silentAfter: s.driver.SilentAfter,
		statuses:    statuses,
		reconnected: reconnected,
		logger:      logger,
	}
	if s.cfg.SilentAfter > 0 {
		d.silentAfter = s.cfg.SilentAfter
	}
	if d.silentAfter <= 0 {
		d.silentAfter = defaultSilentAfter
	}
	if s.cfg.NIBP != nil {
		d.nibpEvery = s.cfg.NIBP.Interval
	}
	return d
}

func resolveDevices(cfg *config.Config) ([]deviceSpec, error) {
	out := make([]deviceSpec, 0, len(cfg.Devices))
	for _, dc := range cfg.Devices {
		drv, ok := drivers.Lookup(dc.Driver)
		if !ok {
			return nil, fmt.Errorf("device %s: unknown driver %q", dc.ID, dc.Driver)
		}
		spec := deviceSpec{cfg: dc, driver: drv}
		spec.target = serialport.Target{Path: dc.Port, Link: dc.LinkFor(drv.Link)}
		if dc.USB != nil {
			spec.target.USB = &serialport.USB{VID: dc.USB.VID, PID: dc.USB.PID, Serial: dc.USB.Serial}
		}
		if drv.Variants != nil {
			vs, err := drv.Variants(dc.Options)
			if err != nil {
				return nil, fmt.Errorf("device %s: %w", dc.ID, err)
			}
			if len(vs) > 1 {
				// Probe each variant's own link; only the config's explicit
				// overrides apply on top (LinkFor would pin the default).
				spec.variants = vs
				spec.target.Link = dc.LinkFor(drivers.Link{})
			} else if len(vs) == 1 {
				spec.target.Link = dc.LinkFor(vs[0].Link)
				spec.cfg.Options = vs[0].Options
			}
		}
		out = append(out, spec)
	}
	return out, nil
}

// staleOverrides applies per-device stale_after settings.
func staleOverrides(cfg *config.Config) func(string, drivers.MetricID) time.Duration {
	over := map[string]time.Duration{}
	for _, d := range cfg.Devices {
		if d.StaleAfter > 0 {
			over[d.ID] = d.StaleAfter
		}
	}
	if len(over) == 0 {
		return nil
	}
	return func(device string, _ drivers.MetricID) time.Duration { return over[device] }
}

func splitHostPortNumber(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", portStr)
	}
	return host, port, nil
}
