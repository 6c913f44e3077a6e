// Package notify defines how an alarm event reaches people: one package per
// channel (ntfy, pushover, webhook, alertmanager, email, exec) behind the
// Notifier interface, each returning a verdict the dispatcher acts on.
package notify

import (
	"context"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Verdict is what a channel says of one attempt.
type Verdict uint8

const (
	// Delivered: the channel accepted the message.
	Delivered Verdict = iota + 1
	// Retry: a transient failure (timeout, 5xx, 429); try again later.
	Retry
	// GiveUp: a failure retrying cannot fix (4xx, bad credentials, bad
	// config); report it and stop.
	GiveUp
)

func (v Verdict) String() string {
	switch v {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case GiveUp:
		return "give_up"
	}
	return "unknown"
}

// Result of one attempt. Err explains Retry and GiveUp; it must never
// contain a secret (token, URL with credentials).
type Result struct {
	Verdict Verdict
	Err     error
	// RetryAfter, when set with Retry, is the wait the service asked for.
	RetryAfter time.Duration
}

// Notifier sends alarm events through one configured channel. Notify is
// called for every phase of an alarm the channel's route covers (start,
// updates such as escalation or repeat, end); a channel that can withdraw a
// message (Pushover cancel, Alertmanager endsAt) does so on PhaseEnd. Notify
// must honour ctx's deadline. It is called from one goroutine per channel.
type Notifier interface {
	Name() string // the channel's configured name
	Notify(ctx context.Context, ev alarm.Event) Result
}

// Acknowledgement is a person acknowledging an alarm through a channel that
// reports it back (a Pushover emergency receipt).
type Acknowledgement struct {
	AlarmID string
	EventID string
	By      string // who, as the channel names them (a Pushover user or device name), never a patient
	Channel string
	At      time.Time
}

// Acknowledger is implemented by channels that report acknowledgements;
// Run polls or listens until ctx ends and calls ack for each.
type Acknowledger interface {
	RunAcknowledgements(ctx context.Context, ack func(Acknowledgement)) error
}

// DefaultTimeout bounds one send when the channel's config sets none.
const DefaultTimeout = 10 * time.Second
