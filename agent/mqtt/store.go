package mqtt

import (
	"strings"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// resumeStore is paho's ordered in-memory store, counting the snapshots
// paho takes of it. paho calls All only to resend the store: once per
// successful connection (client.go, resume) and once when Connect is called
// (reserveStoredPublishIDs). A new snapshot after a connection attempt
// therefore means paho has decided what it will resend on that connection.
type resumeStore struct {
	*paho.OrderedMemoryStore
	snapshots atomic.Uint64
}

func newResumeStore() *resumeStore {
	return &resumeStore{OrderedMemoryStore: paho.NewOrderedMemoryStore()}
}

// All is paho's snapshot. The count goes up after the snapshot is taken, so
// a message published after the count was seen is not in that snapshot.
func (s *resumeStore) All() []string {
	keys := s.OrderedMemoryStore.All()
	s.snapshots.Add(1)
	return keys
}

// outstanding counts the publishes in the store: handed to paho but not yet
// acknowledged by the broker (paho deletes a message on its PUBACK). It does
// not count as a snapshot.
func (s *resumeStore) outstanding() int {
	n := 0
	for _, key := range s.OrderedMemoryStore.All() {
		if strings.HasPrefix(key, "o.") { // paho's prefix for outbound packets
			n++
		}
	}
	return n
}
