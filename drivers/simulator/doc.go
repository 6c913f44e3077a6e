// Package simulator makes a pseudo-terminal behave like a serial vital-signs
// device, so the agent, its tests and `vigil demo` can run without hardware.
// It knows nothing of MQTT, Prometheus or alarms: it plays a Scenario (a
// scripted patient: values over time, quality flags, line garbage, silence,
// cable unplugs) through a driver's drivers.Encoder at the device's pace or
// at any rate.
//
// Scenarios are data. The built-in ones are the YAML files in scenarios/,
// embedded in the binary, and are also the reference examples of the file
// format that LoadScenario reads.
//
// # The pseudo-terminal, as measured on Linux
//
// The device is the master side; a host (the agent, through go.bug.st/serial)
// opens the slave path, /dev/pts/N, or the optional symlink. The simulator
// does not keep the slave open itself, because of what a pty does that a
// serial cable does not:
//
//   - Bytes written to the master while no process has the slave open are
//     not lost: about 20 KB queue up (then writes block) and the next host to
//     open the slave reads them, minutes-old frames looking live. This
//     happens whether or not the simulator holds the slave open.
//   - Without the slave held, the master polls POLLHUP while no host has the
//     slave open, and reads on the master fail with EIO. The player checks
//     POLLHUP before every write and drops the frames instead (a real
//     device's bytes on an unconnected cable are lost too), and after a host
//     closes the port it purges what the host left unread (TCIFLUSH on a
//     briefly opened slave; a flush on the master does not reach that
//     queue). Holding the slave would hide the host's presence.
//   - The slave's termios settings survive while no one has it open, so
//     the raw mode set at creation (no CR/LF translation, no echo) holds for
//     any later host; go.bug.st/serial sets raw mode on open anyway.
//   - Closing the master makes a host's pending read fail with
//     serial.PortClosed, as an unplugged USB adapter does; bytes the host had
//     not read yet are discarded with it.
//   - pty.Open leaves the master in blocking mode (it calls Fd), where Close
//     cannot interrupt a pending Read; the device uses a non-blocking
//     duplicate so that Close and write deadlines work.
//
// What the host writes to the device is read from the master and discarded
// (or handed to Options.OnHostWrite), so a host that talks to its device
// never blocks on a full buffer.
package simulator
