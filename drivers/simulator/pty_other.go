//go:build !linux

package simulator

import (
	"errors"
	"os"
)

// ErrUnsupportedOS is returned by NewDevice off Linux: the pseudo-terminal
// handling (termios, host detection by POLLHUP) was written and measured on
// Linux, the only system Vigil runs on.
var ErrUnsupportedOS = errors.New("simulator: pseudo-terminal devices need Linux")

func openPTY() (*os.File, string, error) { return nil, "", ErrUnsupportedOS }

func hostAttached(*os.File) bool { return false }

func purgeSlaveInput(string) error { return ErrUnsupportedOS }
