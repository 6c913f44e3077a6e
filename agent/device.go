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

// StatusConsumer is told every change of a device's connection state.
type StatusConsumer interface {
	DeviceStatus(s devstatus.Status)
}

// defaultSilentAfter applies to drivers that do not say how often their
// device talks.
const defaultSilentAfter = 5 * time.Second

// device keeps one configured device connected and feeds its bytes through
// its driver's decoder into the pipeline. It owns the goroutines it starts:
// the serial connection loop, the silence watchdog and the keep-alive ticker.
type device struct {
	id          string
	driver      *drivers.Driver
	options     drivers.Options
	target      serialport.Target
	silentAfter time.Duration
	statuses    []StatusConsumer
	reconnected func(device string)
	logger      *slog.Logger

	mu        sync.Mutex // guards everything below
	pipe      *pipeline
	decoder   drivers.Decoder
	state     devstatus.State
	lastFrame time.Time
	connects  int
	feedTime  time.Time // receive time of the bytes being decoded
	// stopConn ends the per-connection goroutines (keep-alive ticks).
	stopConn context.CancelFunc
	connWG   sync.WaitGroup
	runCtx   context.Context
}

func (d *device) run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchSilence(ctx)
	}()
	err := serialport.Run(ctx, d.target, d, d.logger)
	wg.Wait()
	d.mu.Lock()
	d.endConnection()
	d.mu.Unlock()
	d.connWG.Wait()
	return err
}

// Connected implements serialport.Handler.
func (d *device) Connected(w io.Writer, port string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dec, err := d.driver.NewDecoder(d.options)
	if err != nil {
		// Options were validated at config load, so this is a driver bug;
		// report the device as disconnected rather than read it wrongly.
		d.logger.Error("driver cannot start", "device", d.id, "driver", d.driver.Name, "err", err)
		d.setState(devstatus.Disconnected, now, err.Error())
		return
	}
	d.decoder = dec
	d.connects++
	if d.connects > 1 && d.reconnected != nil {
		d.reconnected(d.id)
	}
	// A fresh connection gets a grace period of one silence limit before it
	// counts as silent.
	d.lastFrame = now
	d.logger.Info("device connected", "device", d.id, "port", port)
	d.setState(devstatus.Connected, now, "")

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
}

// Disconnected implements serialport.Handler.
func (d *device) Disconnected(err error, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endConnection()
	d.decoder = nil
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
	if d.state == devstatus.Silent {
		d.logger.Info("device talking again", "device", d.id)
		d.setState(devstatus.Connected, now, "")
	}
}

func (d *device) keepAlive(ctx context.Context, conv drivers.Conversation, w io.Writer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			err := conv.Tick(w, now)
			d.mu.Unlock()
			if err != nil && !errors.Is(err, context.Canceled) {
				d.logger.Warn("device keep-alive failed", "device", d.id, "err", err)
			}
		}
	}
}

// watchSilence marks a connected device silent when no frame arrived within
// its silence limit: an open port that delivers nothing is as blind as an
// unplugged one (clinical.md 6).
func (d *device) watchSilence(ctx context.Context) {
	period := d.silentAfter / 4
	if period < 50*time.Millisecond {
		period = 50 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			if d.state == devstatus.Connected && now.Sub(d.lastFrame) > d.silentAfter {
				msg := fmt.Sprintf("no data for %s", d.silentAfter)
				d.logger.Warn("device silent", "device", d.id, "silent_for", now.Sub(d.lastFrame).Round(time.Millisecond))
				d.setState(devstatus.Silent, now, msg)
			}
			d.mu.Unlock()
		}
	}
}

// setState reports a change of state; d.mu held.
func (d *device) setState(s devstatus.State, now time.Time, lastError string) {
	if d.state == s {
		return
	}
	d.state = s
	st := devstatus.Status{Device: d.id, State: s, Since: now, LastError: lastError}
	for _, c := range d.statuses {
		c.DeviceStatus(st)
	}
}
