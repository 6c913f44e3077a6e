// Package hl7 is the protocol of patient monitors that push HL7 v2 ORU^R01
// messages over MLLP on a TCP connection: Mindray, Edan, Comen and Philips
// gateways (protocols.md 5.2). It frames and parses the messages, maps the
// OBX observations to catalogue metrics by their 11073-10101 code and the
// vendor aliases of protocols.md 5.2 and 5.3, and builds the ACKs to send
// back. The TCP listener is the agent's; this package only sees bytes.
// See README.md for what is confirmed, inferred or unverified.
package hl7

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Name is the driver's registry name, used in the config's `driver:` key.
const Name = "hl7-mllp"

// silentAfter: monitors push at an interval set on the monitor
// (protocols.md 5.2: "per monitor config") [I]. README asks sites to set it
// to 10 s or less; 30 s is then three lost messages, not a slow monitor.
const silentAfter = 30 * time.Second

// metrics are the catalogue metrics a monitor can send (mapping.go).
var metrics = []drivers.MetricID{
	drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex,
	drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate,
	drivers.RespirationRate,
}

func init() {
	drivers.Register(&drivers.Driver{
		Transport:   drivers.TCPListen, // the monitor connects to the agent
		Name:        Name,
		Description: "Patient monitors pushing HL7 v2 ORU^R01 over MLLP/TCP (Mindray, Edan, Comen, Philips gateways): SpO2, pulse, PI, NIBP, respiration rate",
		// Not serial: the monitor connects over TCP to `listen`.
		Link:    drivers.Link{},
		Metrics: metrics,
		NewDecoder: func(opts drivers.Options) (drivers.Decoder, error) {
			o, err := parseOptions(opts)
			if err != nil {
				return nil, err
			}
			return NewDecoder(Config{Sender: o.sender, ACKs: true}), nil
		},
		NewEncoder: func(opts drivers.Options) (drivers.Encoder, error) {
			o, err := parseOptions(opts)
			if err != nil {
				return nil, err
			}
			return NewEncoder(o.sender, StyleMindray), nil
		},
		Validate:    Validate,
		USBIDs:      nil, // a LAN device
		SilentAfter: silentAfter,
	})
}

// OptionError is one problem with one driver option.
type OptionError struct {
	Option string // "listen", "sender", or the unknown key
	Reason string
}

func (e *OptionError) Error() string {
	return Name + " option " + strconv.Quote(e.Option) + ": " + e.Reason
}

type options struct {
	listen string
	sender string
}

// Validate checks the driver options: `listen`, the host:port the agent
// accepts the monitor's connection on, and `sender`, the monitor's id as
// its messages name it (Message.Sender). Both are required; any other key
// is refused. Each problem is its own *OptionError, joined with
// errors.Join.
func Validate(opts drivers.Options) error {
	_, err := parseOptions(opts)
	return err
}

func parseOptions(opts drivers.Options) (options, error) {
	var o options
	var errs []error
	var unknown []string
	for k := range opts {
		if k != "listen" && k != "sender" {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, &OptionError{Option: k, Reason: "unknown option; " + Name + " takes listen and sender"})
	}

	switch v, ok := opts["listen"]; {
	case !ok:
		errs = append(errs, &OptionError{Option: "listen", Reason: "is required: the address to accept the monitor's HL7 connection on, such as 0.0.0.0:2575 (2575 is the IANA HL7 port)"})
	default:
		s, isString := v.(string)
		if !isString {
			errs = append(errs, &OptionError{Option: "listen", Reason: fmt.Sprintf("must be a host:port string such as \"0.0.0.0:2575\", not %T", v)})
		} else if err := checkListen(s); err != nil {
			errs = append(errs, &OptionError{Option: "listen", Reason: err.Error()})
		} else {
			o.listen = s
		}
	}

	switch v, ok := opts["sender"]; {
	case !ok:
		errs = append(errs, &OptionError{Option: "sender", Reason: "is required: the monitor's id as its messages name it (OBX-18 equipment id, else MSH-4), such as the serial number the monitor sends"})
	default:
		s, isString := v.(string)
		switch {
		case !isString:
			errs = append(errs, &OptionError{Option: "sender", Reason: fmt.Sprintf("must be a string, not %T (quote it in YAML)", v)})
		case s == "":
			errs = append(errs, &OptionError{Option: "sender", Reason: "must not be empty"})
		case strings.TrimSpace(s) != s:
			errs = append(errs, &OptionError{Option: "sender", Reason: "has leading or trailing spaces, which the monitor's id never has"})
		case len(s) > maxControlID:
			errs = append(errs, &OptionError{Option: "sender", Reason: fmt.Sprintf("is %d bytes long; an HL7 id has at most %d", len(s), maxControlID)})
		case !isCleanText([]byte(s)):
			errs = append(errs, &OptionError{Option: "sender", Reason: "contains control characters or invalid UTF-8"})
		default:
			o.sender = s
		}
	}
	return o, errors.Join(errs...)
}

// checkListen accepts host:port with a numeric port 1-65535 and a host that
// is empty (every interface), an IP address or a host name.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v); write it like 0.0.0.0:2575", s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return fmt.Errorf("host %q is too long", host)
	}
	for _, c := range host {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return fmt.Errorf("host %q is neither an IP address nor a host name", host)
		}
	}
	return nil
}
