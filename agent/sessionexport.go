package agent

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/report"
	"github.com/vigil-monitor/vigil/agent/session"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
)

// exportFormats are the formats of GET /api/v1/sessions/{id}/export.
var exportFormats = map[string]struct {
	contentType string
	ext         string
	write       func(w io.Writer, s report.Session) error
}{
	"csv":  {"text/csv; charset=utf-8", "csv", func(w io.Writer, s report.Session) error { return report.WriteCSV(w, s) }},
	"json": {"application/json", "json", func(w io.Writer, s report.Session) error { return report.WriteJSON(w, s) }},
	"fhir": {"application/fhir+json", "fhir.json", func(w io.Writer, s report.Session) error { return report.WriteFHIR(w, s) }},
}

// record gathers one session's complete record from the store: its
// readings, alarm events and acknowledgements. The clinic reference is not
// part of it (report.Session has no field for it).
func (s *sessions) record(sess session.Session, site string) (report.Session, error) {
	out := report.Session{
		ID: sess.ID, Site: site, Room: sess.Room, Route: string(sess.Route),
		Started: sess.Started.Local(), BaselineWarning: sess.BaselineWarning,
	}
	to := time.Now()
	if !sess.Ended.IsZero() {
		ended := sess.Ended.Local()
		out.Ended, to = &ended, sess.Ended.Add(time.Second)
	}
	for _, d := range sess.Doses {
		out.Doses = append(out.Doses, d.Local())
	}
	if len(sess.Baseline) > 0 {
		out.Baseline = make(map[string]report.Value, len(sess.Baseline))
		for metric, m := range sess.Baseline {
			unit := ""
			if id, ok := drivers.MetricByName(metric); ok {
				unit = id.Info().Unit
			}
			out.Baseline[metric] = report.Value{Value: m.Value, Unit: unit, At: m.At.Local(), Device: m.Device}
		}
	}
	if c := sess.Check; c != nil {
		rc := &report.Check{At: c.At.Local(), ObservationLongEnough: c.ObservationComplete,
			Observed:       time.Duration(c.ObservedSeconds * float64(time.Second)),
			MinObservation: time.Duration(c.MinObservationSeconds * float64(time.Second))}
		for _, v := range c.Vitals {
			mc := report.MetricCheck{Metric: v.Metric, WithinTolerance: v.Result == session.ResultPass}
			if id, ok := drivers.MetricByName(v.Metric); ok {
				mc.Unit = id.Info().Unit
			}
			if v.Baseline != nil {
				b := v.Baseline.Value
				mc.Baseline = &b
			}
			if v.Latest != nil {
				l := v.Latest.Value
				mc.Final = &l
			}
			rc.Metrics = append(rc.Metrics, mc)
		}
		rc.Result = "fail"
		if c.Pass {
			rc.Result = "pass"
		}
		if len(c.Notes) > 0 {
			rc.Result += ": " + strings.Join(c.Notes, "; ")
		}
		out.Check = rc
	}
	readings, err := s.readings.Readings(store.ReadingQuery{Session: sess.ID})
	if err != nil {
		return out, fmt.Errorf("readings: %w", err)
	}
	for _, r := range readings {
		out.Readings = append(out.Readings, r.Reading)
	}
	evs, err := s.readings.AlarmEvents(sess.Started, to, sess.ID)
	if err != nil {
		return out, fmt.Errorf("alarm events: %w", err)
	}
	out.Alarms = evs
	occurrences := map[string]bool{}
	for _, ev := range evs {
		occurrences[ev.EventID] = true
	}
	entries, err := s.readings.AuditEntries(sess.Started, to)
	if err != nil {
		return out, fmt.Errorf("audit: %w", err)
	}
	for _, e := range entries {
		if e.Type == audit.TypeAcknowledge && occurrences[e.EventID] {
			out.Acknowledgements = append(out.Acknowledgements, report.Ack{AlarmID: e.AlarmID, EventID: e.EventID, By: e.By, Via: e.Via, At: e.Time.Local()})
		}
	}
	return out, nil
}

// exportHandler serves GET /api/v1/sessions/{id}/export?format=csv|json|fhir
// and GET /api/v1/sessions/{id}/report (the HTML report).
func (s *sessions) exportHandler(site string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.st == nil || s.readings == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "error": "the store is not available"})
			return
		}
		id := r.PathValue("id")
		sess, status, err := s.load(id)
		if err != nil {
			writeJSON(w, status, map[string]any{"ok": false, "error": err.Error()})
			return
		}
		rec, err := s.record(sess, site)
		if err != nil {
			s.logger.Error("session record not read", "session", id, "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": "the store could not be read"})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if strings.HasSuffix(r.URL.Path, "/report") {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="vigil-session-%s.html"`, id))
			if err := report.WriteHTML(w, rec); err != nil {
				s.logger.Error("session report failed", "session", id, "err", err)
			}
			return
		}
		name := r.URL.Query().Get("format")
		if name == "" {
			name = "csv"
		}
		f, ok := exportFormats[name]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "format must be csv, json or fhir"})
			return
		}
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="vigil-session-%s.%s"`, id, f.ext))
		if err := f.write(w, rec); err != nil {
			s.logger.Error("session export failed", "session", id, "format", name, "err", err)
		}
	})
}
