package store

import (
	"database/sql"
	"fmt"
)

// LastOutboxID is the highest outbox id waiting (0 when the outbox is
// empty). At start, everything up to it was taken by an earlier run of the
// agent: the publisher sends it marked "replayed".
func (s *Store) LastOutboxID() (int64, error) {
	var id sql.NullInt64
	if err := s.rdb.QueryRow(`SELECT MAX(id) FROM outbox`).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: last outbox id: %w", err)
	}
	return id.Int64, nil
}
