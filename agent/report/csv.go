package report

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

// csvHeader is the CSV export's header row. Units are in the unit column
// (one row per reading of mixed metrics, so a unit per column name cannot
// work); README.md describes every column.
var csvHeader = []string{
	"received_utc",    // agent clock, RFC 3339 UTC, milliseconds
	"device_time_utc", // the device's own clock, same format; empty when the protocol has none
	"device",          // configured device id
	"metric",          // catalogue name: spo2, pulse_rate, ...
	"value",           // empty when the reading is not valid: never a sentinel number
	"unit",            // UCUM
	"valid",           // true or false
	"flags",           // quality flags, ";"-separated, e.g. low-perfusion;artifact
	"seq",             // per-device sequence number
	"session_id",
}

// WriteCSV writes one row per exported reading, in agent-time order, under
// csvHeader. An invalid reading keeps its row (the gap is part of the
// record) with an empty value and valid=false.
func WriteCSV(w io.Writer, s Session) error {
	if err := validate(&s); err != nil {
		return err
	}
	sel := selectReadings(s.Readings)
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	sessionID := spreadsheetSafe(s.ID)
	row := make([]string, len(csvHeader))
	var flagNames []string
	for i := range sel.readings {
		r := &sel.readings[i]
		info := r.Metric.Info()
		row[0] = formatTime(r.Received)
		row[1] = formatTime(r.DeviceTime)
		row[2] = spreadsheetSafe(r.Device)
		row[3] = info.Name
		if usable(r) {
			row[4] = strconv.FormatFloat(r.Value, 'f', -1, 64)
			row[6] = "true"
		} else {
			row[4] = ""
			row[6] = "false"
		}
		row[5] = info.Unit
		flagNames = r.Flags.AppendNames(flagNames[:0])
		row[7] = strings.Join(flagNames, ";")
		row[8] = strconv.FormatUint(r.Seq, 10)
		row[9] = sessionID
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// spreadsheetSafe defuses a text cell a spreadsheet would run as a formula
// (a device id configured as "=HYPERLINK(...)"): such a cell gets a leading
// apostrophe, the usual CSV-injection guard. Vigil's own names never start
// with these characters, so real data passes unchanged.
func spreadsheetSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
