//go:build linux

package simulator

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openPTY creates a pseudo-terminal whose slave side is in raw mode and
// returns its master, pollable so that Close interrupts a pending Read or
// Write and deadlines work, and the slave's path.
//
// The slave is closed again before returning: the simulator does not hold it
// open. What we measured on Linux (see doc.go) is that with the slave held,
// bytes written while no host has the port open pile up in the slave's input
// queue (about 20 KB) and are delivered to the next host that opens it, as
// minutes-old frames; without it, the master sees POLLHUP while no host is
// there, so the player can drop frames as a real device's bytes are lost on
// an unconnected cable.
func openPTY() (*os.File, string, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, "", fmt.Errorf("simulator: open pty: %w", err)
	}
	slavePath := s.Name()
	err = makeRaw(s)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = m.Close()
		return nil, "", fmt.Errorf("simulator: raw mode on %s: %w", slavePath, err)
	}
	// pty.Open calls Fd() on the master, which turns it into a blocking file
	// that Close cannot interrupt. A non-blocking duplicate goes through the
	// runtime poller instead.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if fd > 0 {
			_ = unix.Close(fd)
		}
		return nil, "", fmt.Errorf("simulator: duplicate pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, "", fmt.Errorf("simulator: non-blocking pty master: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), slavePath, nil
}

// makeRaw sets the slave like cfmakeraw(3): no CR/LF translation, no echo,
// no line editing or signals, 8 data bits; a device's bytes pass unchanged.
func makeRaw(s *os.File) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ioErr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		ioErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return ioErr
}

// hostAttached reports whether some process has the slave open: the master
// polls POLLHUP while none has.
func hostAttached(m *os.File) bool {
	rc, err := m.SyscallConn()
	if err != nil {
		return false
	}
	attached := false
	_ = rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			_, err := unix.Poll(p, 0)
			if err == unix.EINTR {
				continue
			}
			attached = err == nil && p[0].Revents&unix.POLLHUP == 0
			return
		}
	})
	return attached
}

// purgeSlaveInput discards bytes queued for the slave that no host read,
// so the next host that opens the port does not receive stale frames. A
// flush on the master side does not reach that queue; opening the slave
// briefly and flushing its input does.
func purgeSlaveInput(slavePath string) error {
	fd, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}
