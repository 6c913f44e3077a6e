package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/notify"
	"github.com/vigil-monitor/vigil/agent/notify/alertmanager"
	"github.com/vigil-monitor/vigil/agent/notify/email"
	execnotify "github.com/vigil-monitor/vigil/agent/notify/exec"
	"github.com/vigil-monitor/vigil/agent/notify/ntfy"
	"github.com/vigil-monitor/vigil/agent/notify/pushover"
	"github.com/vigil-monitor/vigil/agent/notify/webhook"
)

// NewNotifier builds the notifier of one configured channel.
func NewNotifier(ch config.Channel, logger *slog.Logger) (notify.Notifier, error) {
	switch {
	case ch.NTFY != nil:
		return ntfy.New(*ch.NTFY, logger)
	case ch.Pushover != nil:
		return pushover.New(*ch.Pushover, logger)
	case ch.Webhook != nil:
		return webhook.New(*ch.Webhook, logger)
	case ch.Alertmanager != nil:
		return alertmanager.New(*ch.Alertmanager, logger)
	case ch.Exec != nil:
		return execnotify.New(*ch.Exec, logger)
	case ch.Email != nil:
		return email.New(*ch.Email, logger)
	}
	return nil, fmt.Errorf("channel %s: type %q has no notifier", ch.Name, ch.Type)
}

// ChannelTestResult is one channel's answer to a test message.
type ChannelTestResult struct {
	Channel string
	Type    string
	Result  notify.Result
	Took    time.Duration
}

// TestChannels sends a low-priority test message, clearly marked as a test,
// through each configured channel (or only the one named) and reports each
// result: the check staff run at the start of a shift. The test carries no
// patient data and no value. For channels that keep state per alarm (an
// Alertmanager alert, a Pushover receipt) the test is ended at once.
func TestChannels(ctx context.Context, cfg *config.Config, only string, logger *slog.Logger) ([]ChannelTestResult, error) {
	var out []ChannelTestResult
	now := time.Now().UTC()
	for _, ch := range cfg.Notify.Channels {
		if only != "" && ch.Name != only {
			continue
		}
		n, err := NewNotifier(ch, logger)
		if err != nil {
			return out, err
		}
		ev := alarm.Event{
			AlarmID:   "notify-test/" + ch.Name,
			EventID:   fmt.Sprintf("notify-test-%d", now.UnixNano()),
			Phase:     alarm.PhaseStart,
			Kind:      alarm.Advisory,
			Priority:  alarm.Low,
			State:     alarm.Active,
			Condition: "test",
			Text:      fmt.Sprintf("%s TEST: Vigil notification check for %s/%s; no action needed", alarm.Low.Marker(), cfg.Site, cfg.Room),
			Site:      cfg.Site,
			Room:      cfg.Room,
			Onset:     now,
			Sent:      now,
		}
		sendCtx, cancel := context.WithTimeout(ctx, notify.DefaultTimeout)
		start := time.Now()
		res := n.Notify(sendCtx, ev)
		took := time.Since(start)
		if res.Verdict == notify.Delivered {
			end := ev
			end.Phase, end.State, end.Sent = alarm.PhaseEnd, alarm.Resolved, time.Now().UTC()
			end.Text = fmt.Sprintf("%s TEST over: Vigil notification check for %s/%s", alarm.Low.Marker(), cfg.Site, cfg.Room)
			n.Notify(sendCtx, end)
		}
		cancel()
		out = append(out, ChannelTestResult{Channel: ch.Name, Type: ch.Type, Result: res, Took: took})
	}
	if only != "" && len(out) == 0 {
		return nil, fmt.Errorf("no channel named %q in %s", only, cfg.File)
	}
	return out, nil
}
