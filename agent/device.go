package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/serialport"
	"github.com/vigil-monitor/vigil/drivers"
)

// StatusConsumer is told every change of a device's connection state or
// technical conditions.
type StatusConsumer interface {
	DeviceStatus(s devstatus.Status)
}

// defaultSilentAfter applies to drivers that do not say how often their
// device talks.
const defaultSilentAfter = 5 * time.Second

// reopenSilentAfter: a device silent for this many silence limits is
// reopened, and again after as long if it stays silent.
const reopenSilentAfter = 2

// Errors of device commands, for the HTTP API and MQTT command results.
var (
	ErrUnknownDevice   = errors.New("no such device")
	ErrNotConnected    = errors.New("device not connected")
	ErrCommandsRefused = errors.New("device takes no commands")
)

// device keeps one configured serial device connected and feeds its bytes
// through its driver's decoder into the pipeline. It owns the goroutines it
// starts: the serial connection loop, the silence watchdog, the keep-alive
// ticker and the measurement schedule.
type device struct {
	id          string
	driver      *drivers.Driver
	options     drivers.Options
	target      serialport.Target
	variants    []drivers.LinkVariant // link settings to probe in turn; one when fixed
	silentAfter time.Duration
	nibpEvery   time.Duration // automatic NIBP measurements; 0 = on demand only
	statuses    []StatusConsumer
	reconnected func(device string)
	logger      *slog.Logger
	// beat, when set, tells the systemd watchdog this device's loop is
	// alive (called from watch).
	beat func()

	mu         sync.Mutex // guards everything below
	pipe       *pipeline
	decoder    drivers.Decoder
	writer     io.Writer // the open connection's writer; nil while disconnected
	state      devstatus.State
	conditions []devstatus.Condition // in force, from the pipeline
	since      time.Time
	lastError  string
	lastFrame  time.Time
	framed     bool // a well-formed frame arrived on this connection
	connects   int
	feedTime   time.Time // receive time of the bytes being decoded
	variant    int       // index into variants in use
	// stopConn ends the per-connection goroutines (keep-alive ticks).
	stopConn context.CancelFunc
	// stopLoop ends the current serial loop, so that connect reopens the
	// port (with the next link variant while probing).
	stopLoop context.CancelFunc
	// reopening is set while the watchdog closes the port to reopen it: the
	// close and reopen are not news (a silent device stays silent until a
	// frame arrives).
	reopening bool
	connWG    sync.WaitGroup
	runCtx    context.Context
}

func (d *device) run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()

	// The watchdog and the schedule stop with the connection loop, also
	// when it fails (link settings the port cannot take).
	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watch(loopCtx)
	}()
	if d.nibpEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.scheduleNIBP(loopCtx)
		}()
	}
	err := d.connect(ctx)
	stop()
	wg.Wait()
	d.mu.Lock()
	d.endConnection()
	d.mu.Unlock()
	d.connWG.Wait()
	return err
}

// connect runs the serial loop until ctx ends. The watchdog ends a loop
// (stopLoop) to reopen the port: to move to the driver's next link variant
// (Contec "auto") while none has produced a well-formed frame, or to reopen
// a device that stays silent.
func (d *device) connect(ctx context.Context) error {
	for ctx.Err() == nil {
		d.mu.Lock()
		t := d.target
		if len(d.variants) > 0 {
			t.Link = mergeLink(d.variants[d.variant].Link, d.target.Link)
		}
		lctx, cancel := context.WithCancel(ctx)
		d.stopLoop = cancel
		d.mu.Unlock()
		err := serialport.Run(lctx, t, d, d.logger)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// mergeLink applies the config's overrides (non-zero fields of over, which
// holds only what the config set) to a variant's link.
func mergeLink(base, over drivers.Link) drivers.Link {
	if over.Baud != 0 {
		base.Baud = over.Baud
	}
	if over.DataBits != 0 {
		base.DataBits = over.DataBits
	}
	if over.Parity != "" {
		base.Parity = over.Parity
	}
	if over.StopBits != "" {
		base.StopBits = over.StopBits
	}
	return base
}

// Connected implements serialport.Handler.
func (d *device) Connected(w io.Writer, port string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	opts := d.options
	if len(d.variants) > 0 {
		opts = d.variants[d.variant].Options
	}
	dec, err := d.driver.NewDecoder(opts)
	if err != nil {
		// Options were validated at config load, so this is a driver bug;
		// report the device as disconnected rather than read it wrongly.
		d.logger.Error("driver cannot start", "device", d.id, "driver", d.driver.Name, "err", err)
		d.setState(devstatus.Disconnected, now, err.Error())
		return
	}
	d.decoder = dec
	d.writer = w
	d.framed = false
	reopened := d.reopening
	d.reopening = false
	d.connects++
	if d.connects > 1 && d.reconnected != nil {
		d.reconnected(d.id)
	}
	// A fresh connection gets a grace period of one silence limit before it
	// counts as silent.
	d.lastFrame = now
	d.logger.Info("device connected", "device", d.id, "port", port)
	if !reopened || d.state != devstatus.Silent {
		d.setState(devstatus.Connected, now, "")
	}

	if conv, ok := dec.(drivers.Conversation); ok {
		if err := conv.Start(w, now); err != nil {
			d.logger.Warn("device start command failed", "device", d.id, "err", err)
		}
		if every := conv.TickEvery(); every > 0 {
			ctx, cancel := context.WithCancel(d.runCtx)
			d.stopConn = cancel
			d.connWG.Add(1)
			go func() {
				defer d.connWG.Done()
				d.keepAlive(ctx, conv, w, every)
			}()
		}
	}
}

// Data implements serialport.Handler.
func (d *device) Data(p []byte, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.decoder == nil {
		return
	}
	d.feedTime = now
	d.decoder.Feed(p, now, d.pipe)
	d.sendReplies()
}

// sendReplies writes what a replying decoder (HL7 ACKs) has queued; d.mu held.
func (d *device) sendReplies() {
	r, ok := d.decoder.(drivers.Replier)
	if !ok || d.writer == nil {
		return
	}
	if out := r.TakeReplies(nil); len(out) > 0 {
		if _, err := d.writer.Write(out); err != nil {
			d.logger.Warn("device reply failed", "device", d.id, "err", err)
		}
	}
}

// Disconnected implements serialport.Handler.
func (d *device) Disconnected(err error, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endConnection()
	d.decoder = nil
	d.writer = nil
	if d.reopening && errors.Is(err, serialport.ErrStopped) {
		return
	}
	msg := "disconnected"
	if err != nil {
		msg = err.Error()
	}
	if errors.Is(err, serialport.ErrStopped) {
		d.logger.Info("device closed", "device", d.id)
	} else {
		d.logger.Warn("device disconnected", "device", d.id, "err", msg)
	}
	d.setState(devstatus.Disconnected, now, msg)
}

// endConnection stops the keep-alive of the current connection; d.mu held.
func (d *device) endConnection() {
	if d.stopConn != nil {
		d.stopConn()
		d.stopConn = nil
	}
}

// frameSeen is the pipeline's onFrame hook; d.mu is held (called from Feed).
// Only well-formed frames prove the device is talking: a stream of garbage
// (wrong baud rate, wrong output mode) leaves it silent.
func (d *device) frameSeen(result drivers.FrameResult) {
	if result != drivers.FrameOK && result != drivers.FrameInvalidValue {
		return
	}
	now := d.feedTime
	d.lastFrame = now
	d.framed = true
	if d.state == devstatus.Silent {
		d.logger.Info("device talking again", "device", d.id)
		d.setState(devstatus.Connected, now, "")
	}
}

// conditionsChanged is the pipeline's hook for a change of the technical
// conditions its readings' flags imply; d.mu is held.
func (d *device) conditionsChanged(c []devstatus.Condition) {
	d.conditions = c
	if d.state == devstatus.Connected {
		d.report(d.feedTime)
	}
}

// command runs a device command (nibp_start) on the open connection.
func (d *device) command(name string, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.decoder == nil || d.writer == nil {
		return ErrNotConnected
	}
	c, ok := d.decoder.(drivers.Commander)
	if !ok {
		return ErrCommandsRefused
	}
	if err := c.Command(name, d.writer, now); err != nil {
		return err
	}
	d.logger.Info("device command sent", "device", d.id, "command", name)
	return nil
}

// scheduleNIBP starts a measurement every nibpEvery; a start refused because
// one is running is skipped, never queued (one cuff, one measurement).
func (d *device) scheduleNIBP(ctx context.Context) {
	t := time.NewTicker(d.nibpEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := d.command("nibp_start", now); err != nil {
				d.logger.Warn("scheduled blood-pressure measurement not started", "device", d.id, "err", err)
			}
		}
	}
}

func (d *device) keepAlive(ctx context.Context, conv drivers.Conversation, w io.Writer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	adv, canAdvance := conv.(drivers.Advancer)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			var err error
			if canAdvance {
				d.feedTime = now
				err = adv.Advance(w, now, d.pipe)
			} else {
				err = conv.Tick(w, now)
			}
			d.mu.Unlock()
			if err != nil && !errors.Is(err, context.Canceled) {
				d.logger.Warn("device keep-alive failed", "device", d.id, "err", err)
			}
		}
	}
}

// watch marks a connected device silent when no well-formed frame arrived
// within its silence limit: an open port that delivers nothing is as blind
// as an unplugged one (clinical.md 6). While probing link variants, a
// connection without any frame after the driver's probe timeout moves on to
// the next variant.
func (d *device) watch(ctx context.Context) {
	period := d.silentAfter / 4
	if d.driver.ProbeTimeout > 0 && d.driver.ProbeTimeout/4 < period {
		period = d.driver.ProbeTimeout / 4
	}
	// At most every 5 s even for a long silence limit: the watch is also
	// the device's heartbeat for the systemd watchdog.
	period = min(max(period, 50*time.Millisecond), 5*time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			if d.beat != nil {
				// The device's lock is free and its watch goes round: the
				// systemd watchdog's sign that this device is not wedged.
				d.beat()
			}
			quiet := now.Sub(d.lastFrame)
			switch {
			case len(d.variants) > 1 && d.decoder != nil && !d.framed && quiet > d.driver.ProbeTimeout && d.stopLoop != nil:
				next := (d.variant + 1) % len(d.variants)
				d.logger.Info("no frame with these link settings; trying the next", "device", d.id,
					"baud", d.variants[d.variant].Link.Baud, "next_baud", d.variants[next].Link.Baud)
				d.variant = next
				d.reopening = true
				d.stopLoop()
				d.stopLoop = nil
			case d.state == devstatus.Connected && quiet > d.silentAfter:
				d.logger.Warn("device silent", "device", d.id, "silent_for", quiet.Round(time.Millisecond))
				d.setState(devstatus.Silent, now, fmt.Sprintf("no data for %s", d.silentAfter))
			case d.state == devstatus.Silent && quiet > reopenSilentAfter*d.silentAfter && d.stopLoop != nil:
				// Reopening resets the device's line and the driver's
				// conversation (start command, keep-alive): a device that
				// stopped answering may take up again.
				d.logger.Warn("device still silent; reopening the port", "device", d.id)
				d.reopening = true
				d.stopLoop()
				d.stopLoop = nil
			}
			d.mu.Unlock()
		}
	}
}

// setState records a change of state and reports it; d.mu held.
func (d *device) setState(s devstatus.State, now time.Time, lastError string) {
	if d.state == s {
		return
	}
	d.state = s
	d.since = now
	d.lastError = lastError
	d.report(now)
}

// report tells the status consumers the device's state and conditions;
// d.mu held. Conditions are only known while frames arrive.
func (d *device) report(now time.Time) {
	st := devstatus.Status{Device: d.id, State: d.state, Since: d.since, LastError: d.lastError}
	if d.state == devstatus.Connected {
		st.Conditions = d.conditions
	}
	for _, c := range d.statuses {
		c.DeviceStatus(st)
	}
}
