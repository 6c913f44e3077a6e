package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// commandResult is the JSON answer of the command endpoint.
type commandResult struct {
	Device  string `json:"device"`
	Command string `json:"command"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

// commandHandler serves POST /api/v1/devices/{device}/commands/{command}:
// `vigil nibp start` and other local tools reach a device through it.
func commandHandler(devices map[string]*device, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, name := r.PathValue("device"), r.PathValue("command")
		res := commandResult{Device: id, Command: name}
		status := http.StatusOK
		d, ok := devices[id]
		var err error
		if !ok {
			err = ErrUnknownDevice
		} else {
			err = d.command(name, time.Now())
		}
		switch {
		case err == nil:
			res.OK = true
		case errors.Is(err, ErrUnknownDevice):
			status = http.StatusNotFound
		case errors.Is(err, drivers.ErrUnknownCommand), errors.Is(err, ErrCommandsRefused):
			status = http.StatusBadRequest
		default:
			// Not connected, or the device is busy (a measurement running).
			status = http.StatusConflict
		}
		if err != nil {
			res.Error = err.Error()
		}
		logger.Info("device command requested", "device", id, "command", name, "via", "http", "ok", res.OK, "err", res.Error)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(res)
	})
}
