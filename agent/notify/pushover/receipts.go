package pushover

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// eventKey names one alarm occurrence: its start, updates and end share it.
type eventKey struct{ alarmID, eventID string }

// openReceipt is an emergency notification that may still re-alert.
type openReceipt struct {
	receipt string
	key     eventKey
	sent    time.Time
	seq     uint64 // insertion order, to evict the oldest
}

// receiptStore holds the open receipts, shared by Notify (adds, cancels on
// end) and RunAcknowledgements (polls, drops on acknowledgement or expiry).
// An alarm repeated at high priority may hold several receipts at once.
type receiptStore struct {
	mu   sync.Mutex
	open map[string]openReceipt // by receipt
	max  int
	seq  uint64
}

func newReceiptStore(max int) *receiptStore {
	return &receiptStore{open: make(map[string]openReceipt), max: max}
}

// add keeps r; when the store is full it drops the oldest receipt and
// returns it.
func (s *receiptStore) add(r openReceipt) (evicted openReceipt, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.open[r.receipt]; !exists && len(s.open) >= s.max {
		first := true
		for _, o := range s.open {
			if first || o.seq < evicted.seq {
				evicted, first = o, false
			}
		}
		delete(s.open, evicted.receipt)
		ok = true
	}
	s.seq++
	r.seq = s.seq
	s.open[r.receipt] = r
	return evicted, ok
}

// takeEvent removes and returns every receipt of key, oldest first.
func (s *receiptStore) takeEvent(key eventKey) []openReceipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []openReceipt
	for id, r := range s.open {
		if r.key == key {
			out = append(out, r)
			delete(s.open, id)
		}
	}
	sortBySeq(out)
	return out
}

// remove drops one receipt; false if it was already gone (cancelled by an
// end that raced with the poll).
func (s *receiptStore) remove(receipt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.open[receipt]
	delete(s.open, receipt)
	return ok
}

// snapshot lists the open receipts, oldest first.
func (s *receiptStore) snapshot() []openReceipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]openReceipt, 0, len(s.open))
	for _, r := range s.open {
		out = append(out, r)
	}
	sortBySeq(out)
	return out
}

func (s *receiptStore) has(receipt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.open[receipt]
	return ok
}

func (s *receiptStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

func sortBySeq(rs []openReceipt) {
	slices.SortFunc(rs, func(a, b openReceipt) int { return cmp.Compare(a.seq, b.seq) })
}

// RunAcknowledgements polls the open emergency receipts until ctx ends and
// calls ack once for each acknowledged one, from this goroutine. A round
// polls every open receipt, and the next round starts one poll interval
// after the previous round finished, so no receipt is polled faster than
// Pushover allows (ReceiptPollInterval). An acknowledged or expired receipt
// is no longer polled. It returns nil when ctx ends, ErrAlreadyPolling if
// another RunAcknowledgements of this Notifier is running.
func (n *Notifier) RunAcknowledgements(ctx context.Context, ack func(notify.Acknowledgement)) error {
	if ack == nil {
		return errors.New("pushover: RunAcknowledgements needs an ack function")
	}
	if !n.polling.CompareAndSwap(false, true) {
		return ErrAlreadyPolling
	}
	defer n.polling.Store(false)

	timer := time.NewTimer(n.pollInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		wait := max(n.pollInterval, n.pollRound(ctx, ack))
		timer.Reset(wait)
	}
}

// pollRound polls each open receipt once and returns the longest wait
// Pushover asked for (0 if none).
func (n *Notifier) pollRound(ctx context.Context, ack func(notify.Acknowledgement)) time.Duration {
	var backoff time.Duration
	for _, r := range n.receipts.snapshot() {
		if ctx.Err() != nil {
			return backoff
		}
		if !n.receipts.has(r.receipt) {
			continue // cancelled by an end, or by an acknowledgement earlier in this round
		}
		a, res := n.receiptStatus(ctx, r.receipt)
		switch res.Verdict {
		case notify.Retry:
			n.logger.Warn("pushover receipt poll failed, will retry", "receipt", r.receipt, "err", res.Err)
			backoff = max(backoff, res.RetryAfter)
			continue
		case notify.GiveUp:
			// Unknown receipt (older than a week) or a token Pushover no
			// longer accepts: asking again gives the same answer.
			n.receipts.remove(r.receipt)
			n.logger.Error("pushover refused the receipt poll; no longer polled", "receipt", r.receipt,
				"alarm_id", r.key.alarmID, "event_id", r.key.eventID, "err", res.Err)
			continue
		}
		switch {
		case a.Acknowledged == 1:
			n.acknowledged(ctx, r, a, ack)
		case a.Expired == 1:
			n.receipts.remove(r.receipt)
			n.logger.Warn("pushover emergency expired without acknowledgement", "receipt", r.receipt,
				"alarm_id", r.key.alarmID, "event_id", r.key.eventID)
		}
	}
	return backoff
}

// acknowledged reports an acknowledged receipt and cancels the other open
// receipts of the same alarm occurrence, which would otherwise keep
// re-alerting for an alarm someone already took.
func (n *Notifier) acknowledged(ctx context.Context, r openReceipt, a answer, ack func(notify.Acknowledgement)) {
	n.receipts.remove(r.receipt)
	at := n.now()
	if a.AcknowledgedAt > 0 {
		at = time.Unix(a.AcknowledgedAt, 0)
	}
	by := n.acknowledger(a)
	n.logger.Info("pushover emergency acknowledged", "receipt", r.receipt,
		"alarm_id", r.key.alarmID, "event_id", r.key.eventID, "by", by, "at", at)
	for _, other := range n.receipts.takeEvent(r.key) {
		if res := n.cancel(ctx, other.receipt); res.Verdict != notify.Delivered {
			n.logger.Warn("pushover cancel after acknowledgement failed; it stops at its expire time",
				"receipt", other.receipt, "err", res.Err)
		}
	}
	ack(notify.Acknowledgement{
		AlarmID: r.key.alarmID,
		EventID: r.key.eventID,
		By:      by,
		Channel: n.name,
		At:      at,
	})
}

// acknowledger names who acknowledged: the device name when Pushover gives
// one (it names the phone, e.g. "nurse-station-2"), else a fingerprint of
// the acknowledging user's key. The key itself is not passed on: it is a
// credential (with an application token it can message that person), and for
// a single-user channel it is this channel's own configured secret.
func (n *Notifier) acknowledger(a answer) string {
	if a.AcknowledgedByDevice != "" {
		return a.AcknowledgedByDevice
	}
	if a.AcknowledgedBy == "" {
		return "pushover user"
	}
	sum := sha256.Sum256([]byte(a.AcknowledgedBy))
	return "pushover user " + hex.EncodeToString(sum[:6])
}
