package report

import (
	"testing"

	"go.uber.org/goleak"
)

// The writers start no goroutine; the browser test's Chromium driver does,
// and must have stopped them all when its contexts are cancelled.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
