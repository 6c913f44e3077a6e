package doctor

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vigil-monitor/vigil/agent/config"
)

// CheckConfig loads the config at path. The result is a failure listing
// every problem when the file cannot be used (cfg is then nil), a warning
// when the file or a secret it names is readable by every user of the
// machine, else OK.
func CheckConfig(path string) (*config.Config, Result) {
	const name = "config"
	cfg, err := config.Load(path)
	if err != nil {
		r := failf(name, "correct each problem above (file:line: key: what is wrong), then run `vigil config check "+path+"` until it says OK",
			"%s is not valid", path)
		var problems config.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				r.Details = append(r.Details, p.Error())
			}
			if len(problems) == 1 && strings.HasPrefix(problems[0].Msg, "cannot read config") {
				// The file itself: missing or unreadable.
				r.Finding = problems[0].Error()
				r.Details = nil
				r.Fix = "give the path of the installed config (the .deb installs /etc/vigil/vigil.yaml), readable by the user running vigil doctor"
			}
		} else {
			r.Details = []string{err.Error()}
		}
		return nil, r
	}

	var exposed []string
	for _, f := range secretFiles(cfg) {
		if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o004 != 0 {
			exposed = append(exposed, fmt.Sprintf("%s (mode %04o)", f, st.Mode().Perm()))
		}
	}
	summary := fmt.Sprintf("%s is valid: site %s, room %s, %s, %s", path, cfg.Site, cfg.Room,
		plural(len(cfg.Devices), "device"), plural(len(cfg.Notify.Channels), "notification channel"))
	if len(exposed) > 0 {
		r := warnf(name, "chmod o-rwx each file listed (the .deb installs them root:vigil, mode 0640)",
			"%s, but readable by every user of this machine: %s", summary, strings.Join(exposed, ", "))
		return cfg, r
	}
	return cfg, okf(name, "%s", summary)
}

// secretFiles are the config file and the files holding secrets that the
// config names (after Load, absolute or relative to the working directory).
func secretFiles(cfg *config.Config) []string {
	files := []string{cfg.File, cfg.MQTT.PasswordFile, cfg.MQTT.KeyFile}
	for _, c := range cfg.Notify.Channels {
		switch {
		case c.NTFY != nil:
			files = append(files, c.NTFY.TokenFile, c.NTFY.PasswordFile)
		case c.Pushover != nil:
			files = append(files, c.Pushover.TokenFile, c.Pushover.UserKeyFile)
		case c.Webhook != nil:
			files = append(files, c.Webhook.SecretFile)
		case c.Alertmanager != nil:
			files = append(files, c.Alertmanager.UsernameFile, c.Alertmanager.PasswordFile)
		case c.Email != nil:
			files = append(files, c.Email.PasswordFile)
		}
	}
	if a := cfg.Alarms.AckLinks; a != nil {
		files = append(files, a.KeyFile)
	}
	out := files[:0]
	for _, f := range files {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
