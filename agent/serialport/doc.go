// Package serialport is Vigil's serial link layer: it opens a bedside
// device's port, keeps it open across unplugs and replugs, and hands the raw
// bytes to whoever decodes them.
//
// # Naming a port
//
// A [Target] names its port either by Path (/dev/ttyUSB0, a
// /dev/serial/by-id/... link, a pty, or any symlink to a tty) or by [USB]
// identity (vendor id, product id, optional serial number). A USB identity
// is resolved through sysfs (/sys/class/tty/*/device, walking up to the USB
// device's idVendor, idProduct and serial attributes) on every open, so a
// device that comes back as /dev/ttyUSB1 after being /dev/ttyUSB0 is found
// again. Resolution never calls go.bug.st/serial's GetPortsList or its
// enumerator: those open every ttyS port to probe it and reprogram a serial
// console (go.bug.st/serial issue #210).
// Only [List], run on demand for `vigil devices`, calls GetPortsList.
//
// # Errors callers can branch on
//
//   - A missing device node satisfies errors.Is(err, os.ErrNotExist).
//   - A USB identity with no plugged-in match is a *[USBNotFoundError]; it
//     also satisfies errors.Is(err, os.ErrNotExist).
//   - A USB identity matching several ttys is an *[AmbiguousUSBError] naming
//     all of them.
//   - Invalid link settings are a *[LinkError]; an unusable Target is a
//     *[TargetError].
//   - A port lost while open is a *[LostError]; the end of a connection
//     because Run's context ended wraps [ErrStopped].
//
// # The connection loop
//
// [Run] keeps one Target connected until its context ends, reporting each
// change of state to a [Handler]: Connected after every successful open,
// Data for every chunk read, and Disconnected once per loss. Every Connected
// is followed by exactly one Disconnected, so a handler may start per
// connection work (a keep-alive ticker) in Connected and stop it in
// Disconnected. Run has no reconnect counter of its own: each Connected call
// after the first is one reconnect, and a handler that wants the number
// counts those calls.
package serialport
