package ntfy

import (
	"testing"

	"go.uber.org/goleak"
)

// net/http starts connection goroutines; every test must leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
