package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/session"
	"github.com/vigil-monitor/vigil/agent/store"
)

// maxSessionBody bounds a session request's body: a route, a clinic
// reference of at most 64 characters and a name.
const maxSessionBody = 4096

// sessionRequest is the body of POST /api/v1/session/{start,dose,end}. The
// clinic reference is only accepted here, in a body (never in a URL, which
// proxies and logs keep), and only for start.
type sessionRequest struct {
	Route     string `json:"route"`
	ClinicRef string `json:"clinic_ref"`
	By        string `json:"by"`
}

// sessionAnswer is every session endpoint's answer.
type sessionAnswer struct {
	OK      bool             `json:"ok"`
	Error   string           `json:"error,omitempty"`
	Active  bool             `json:"active"`
	Session *session.Session `json:"session"` // the public form: no clinic reference
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// changeHandler serves POST /api/v1/session/{action}: start, dose, end.
func (s *sessions) changeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req sessionRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSessionBody+1))
		switch {
		case err != nil || len(body) > maxSessionBody:
			writeJSON(w, http.StatusBadRequest, sessionAnswer{Error: "body unreadable or larger than 4096 bytes"})
			return
		case len(strings.TrimSpace(string(body))) > 0 && json.Unmarshal(body, &req) != nil:
			writeJSON(w, http.StatusBadRequest, sessionAnswer{Error: `body is not a JSON object {"route", "clinic_ref", "by"}`})
			return
		}
		req.By = strings.TrimSpace(req.By)
		if req.By == "" || utf8.RuneCountInString(req.By) > 64 {
			writeJSON(w, http.StatusBadRequest, sessionAnswer{Error: `"by" is required (at most 64 characters): session changes are audited with who`})
			return
		}
		action := r.PathValue("action")
		if action != "start" && (req.Route != "" || req.ClinicRef != "") {
			writeJSON(w, http.StatusBadRequest, sessionAnswer{Error: "route and clinic_ref are given at start"})
			return
		}
		var sess session.Session
		switch action {
		case "start":
			sess, err = s.start(req.Route, req.ClinicRef, req.By, "http")
		case "dose":
			sess, err = s.dose(req.By, "http")
		case "end":
			sess, err = s.end(req.By, "http")
		default:
			writeJSON(w, http.StatusNotFound, sessionAnswer{Error: "unknown session action; use start, dose or end"})
			return
		}
		if err != nil {
			writeJSON(w, sessionStatus(err), sessionAnswer{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, sessionAnswer{OK: true, Active: sess.Active(), Session: &sess})
	})
}

// sessionStatus maps a manager error to an HTTP status.
func sessionStatus(err error) int {
	switch {
	case session.IsInput(err):
		return http.StatusBadRequest
	case errors.Is(err, session.ErrActive), errors.Is(err, session.ErrNoSession), errors.Is(err, session.ErrEnded),
		errors.Is(err, session.ErrTooManyDoses), errors.Is(err, session.ErrTimeOrder):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// currentHandler serves GET /api/v1/session: the active session, if any.
func (s *sessions) currentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sess, ok := s.active()
		ans := sessionAnswer{OK: true, Active: ok}
		if ok {
			ans.Session = &sess
		}
		writeJSON(w, http.StatusOK, ans)
	})
}

// listHandler serves GET /api/v1/sessions?limit=N (newest first) and
// GET /api/v1/sessions/{id}, from the store, in the public form.
func (s *sessions) listHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.st == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "error": "the store is not available"})
			return
		}
		if id := r.PathValue("id"); id != "" {
			sess, status, err := s.load(id)
			if err != nil {
				writeJSON(w, status, map[string]any{"ok": false, "error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"ok": true, "session": sess})
			return
		}
		limit := sessionListLimitDefault
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > sessionListLimitMax {
				writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "limit must be 1 to 500"})
				return
			}
			limit = n
		}
		rows, err := s.st.Sessions(s.room, limit)
		if err != nil {
			s.logger.Error("sessions not listed", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": "the store could not be read"})
			return
		}
		list := make([]session.Session, 0, len(rows))
		for _, row := range rows {
			sess, err := session.UnmarshalStored(row.Data)
			if err != nil {
				s.logger.Warn("stored session unreadable; left out of the list", "session", row.ID, "err", err)
				continue
			}
			list = append(list, sess)
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions": list})
	})
}

// load reads one session from the store, with the HTTP status of a failure.
func (s *sessions) load(id string) (session.Session, int, error) {
	if !session.ValidID(id) {
		return session.Session{}, http.StatusNotFound, errors.New("no such session")
	}
	row, err := s.st.Session(id)
	if errors.Is(err, store.ErrNotFound) {
		return session.Session{}, http.StatusNotFound, errors.New("no such session")
	}
	if err != nil {
		s.logger.Error("session not read", "session", id, "err", err)
		return session.Session{}, http.StatusInternalServerError, errors.New("the store could not be read")
	}
	sess, err := session.UnmarshalStored(row.Data)
	if err != nil {
		return session.Session{}, http.StatusInternalServerError, errors.New("the stored session is unreadable")
	}
	return sess, http.StatusOK, nil
}
