package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent/session"
	"github.com/vigil-monitor/vigil/drivers"
)

// Limits of the session commands.
const (
	// sessionCallTimeout bounds a start, dose, end, list or show call.
	sessionCallTimeout = 10 * time.Second
	// sessionDownloadTimeout bounds an export or report: the agent reads the
	// whole session from its store first.
	sessionDownloadTimeout = 2 * time.Minute
	// maxSessionAnswer bounds a JSON answer (a list of 500 sessions with
	// their schedules and checks stays far below).
	maxSessionAnswer = 16 << 20
	// maxClinicRefInput bounds what --clinic-ref - reads from standard input.
	maxClinicRefInput = 4096
	// sessionListLimitMax is the agent's largest ?limit= (agent/sessionapi.go).
	sessionListLimitMax = 500
	// exportFileMode: an export holds a patient's vital signs; the group
	// (e.g. the clinic's records staff) may read it, others may not.
	exportFileMode = 0o640
)

func newSessionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Start, dose and end dosing sessions; list, export and report them",
		Long: `Dosing sessions of the running agent's room (clinical.md 3, ketamine).

"vigil session start" opens a session: from then on every reading and alarm
carries its id, and the last valid SpO2, pulse and blood pressure before the
first dose become the baseline. "vigil session dose" marks each dose (the
scheduled blood pressures follow the first). "vigil session end" closes the
session and prints the end-of-session check: each vital against its
baseline, and whether the minimum observation time has passed.

Like "vigil alarms", these commands reach the agent through its config file
(--config FILE, its http.listen) or its address (--addr).`,
	}
	cmd.AddCommand(
		newSessionStartCommand(),
		newSessionChangeCommand("dose"),
		newSessionChangeCommand("end"),
		newSessionListCommand(),
		newSessionShowCommand(),
		newSessionExportCommand(),
		newSessionReportCommand(),
	)
	return cmd
}

func newSessionStartCommand() *cobra.Command {
	var (
		flags     agentFlags
		route     string
		clinicRef string
		by        string
	)
	c := &cobra.Command{
		Use:   "start [--route ROUTE] [--clinic-ref REF] --by NAME",
		Short: "Start a dosing session; prints the new session id on the first line",
		Long: `Start a dosing session in the running agent's room. The new session id is
printed alone on the first line, for scripts; a short summary follows.

--route records how the dose is given: lozenge, im, iv or intranasal.
--clinic-ref records the clinic's own reference (a chart number, at most 64
characters). It is sent to the agent in the request body, never in a URL, and
kept only in the agent's local store: it is never published, logged, exported
or printed. A command line is visible to other users of this machine (ps) and
kept in shell history: give --clinic-ref - to read it from standard input.

A room has one session at a time: a start while one is active is refused.`,
		Example: `  id=$(vigil session start --route iv --by nurse-a --config /etc/vigil/vigil.yaml | head -n 1)
  vigil session start --route intranasal --clinic-ref - --by nurse-a --addr 127.0.0.1:9817`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(by) == "" {
				return errors.New("--by NAME is required: who starts the session (a staff name or station, never a patient)")
			}
			r, err := session.ParseRoute(route)
			if err != nil {
				return errors.New("--route: not one of lozenge, im, iv, intranasal")
			}
			ref := clinicRef
			if ref == "-" {
				if ref, err = readClinicRef(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			parsed, err := session.ParseClinicRef(ref)
			if err != nil {
				var ie *session.InputError
				if errors.As(err, &ie) {
					// The reason never quotes the value (session.ParseClinicRef).
					return errors.New("--clinic-ref: " + ie.Reason)
				}
				return errors.New("--clinic-ref: not a valid reference")
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			ans, err := client.change(cmd.Context(), "start", sessionChange{Route: string(r), ClinicRef: parsed.Reveal(), By: by})
			if err != nil {
				return err
			}
			s := ans.Session
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, s.ID)
			fmt.Fprintf(out, "Session started %s in %s (by %s).\n", clock(s.Started), s.Room, strings.TrimSpace(by))
			fmt.Fprintf(out, "Route: %s.\n", routeText(s.Route))
			if parsed != "" {
				fmt.Fprintln(out, "Clinic reference recorded: kept only in the agent's local store, never published or exported.")
			}
			fmt.Fprintln(out, `Every reading now carries the session id. Mark the dose with "vigil session dose --by NAME".`)
			return nil
		},
	}
	flags.register(c)
	c.Flags().StringVar(&route, "route", "", "how the dose is given: lozenge, im, iv or intranasal")
	c.Flags().StringVar(&clinicRef, "clinic-ref", "", `the clinic's reference (chart number), kept only in the local store; "-" reads it from standard input`)
	c.Flags().StringVar(&by, "by", "", "who starts the session")
	return c
}

// readClinicRef reads the clinic reference from the first line of r.
func readClinicRef(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxClinicRefInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--clinic-ref -: reading standard input: %w", err)
	}
	if errors.Is(err, io.EOF) && len(line) >= maxClinicRefInput {
		return "", fmt.Errorf("--clinic-ref -: no end of line within %d bytes of standard input", maxClinicRefInput)
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.TrimSpace(line) == "" {
		return "", errors.New("--clinic-ref -: standard input has no reference on its first line")
	}
	return line, nil
}

// newSessionChangeCommand makes "vigil session dose" or "vigil session end".
func newSessionChangeCommand(action string) *cobra.Command {
	var (
		flags agentFlags
		by    string
	)
	c := &cobra.Command{
		Use:   action + " --by NAME",
		Short: "Record a dose in the active session",
		Long: `Record a dose now in the room's active session. The first dose fixes the
baseline (the last valid SpO2, pulse and blood pressure before it, printed
here) and starts the blood-pressure schedule. More doses may follow; the
observation time runs from the last one.`,
		Example: `  vigil session dose --by nurse-a --config /etc/vigil/vigil.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(by) == "" {
				return fmt.Errorf("--by NAME is required: who records the %s (a staff name or station, never a patient)", action)
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			ans, err := client.change(cmd.Context(), action, sessionChange{By: by})
			if err != nil {
				return err
			}
			s := ans.Session
			out := cmd.OutOrStdout()
			if action == "dose" {
				n := len(s.Doses)
				at := s.Started
				if n > 0 {
					at = s.Doses[n-1]
				}
				fmt.Fprintf(out, "Dose %d recorded at %s in session %s (by %s).\n", n, clock(at), s.ID, strings.TrimSpace(by))
				writeBaseline(out, s)
				if !s.Schedule.NextDue.IsZero() {
					fmt.Fprintf(out, "Next scheduled blood pressure due at %s.\n", clock(s.Schedule.NextDue))
				}
				return nil
			}
			fmt.Fprintf(out, "Session %s ended at %s (by %s).\n", s.ID, clock(s.Ended), strings.TrimSpace(by))
			writeCheck(out, s.Check)
			return nil
		},
	}
	if action == "end" {
		c.Short = "End the active session and print the end-of-session check"
		c.Long = `End the room's active session. The end-of-session check is recorded and
printed: each vital's baseline and latest value, pass or fail (within the
protocol's tolerance, 20% by default), and whether the minimum observation
time since the last dose (2 h by default) had passed. Ending earlier is
allowed and recorded as an incomplete observation.`
		c.Example = `  vigil session end --by nurse-a --config /etc/vigil/vigil.yaml`
	}
	flags.register(c)
	c.Flags().StringVar(&by, "by", "", "who records the "+action)
	return c
}

func newSessionListCommand() *cobra.Command {
	var (
		flags agentFlags
		limit int
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List the room's sessions, newest first",
		Example: `  vigil session list --config /etc/vigil/vigil.yaml
  vigil session list --limit 5 --addr 127.0.0.1:9817`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > sessionListLimitMax {
				return fmt.Errorf("--limit must be 1 to %d", sessionListLimitMax)
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			var ans struct {
				OK       bool              `json:"ok"`
				Error    string            `json:"error"`
				Sessions []json.RawMessage `json:"sessions"`
			}
			if err := client.get(cmd.Context(), "/api/v1/sessions?limit="+strconv.Itoa(limit), "listing sessions", &ans); err != nil {
				return err
			}
			list := make([]session.Session, 0, len(ans.Sessions))
			unreadable := 0
			for _, raw := range ans.Sessions {
				var s session.Session
				if json.Unmarshal(raw, &s) != nil {
					unreadable++
					continue
				}
				list = append(list, s)
			}
			out := cmd.OutOrStdout()
			if unreadable > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "vigil: %d session(s) in the agent's answer are unreadable and not listed\n", unreadable)
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "No sessions.")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTARTED\tENDED\tROUTE\tDOSES\tCHECK")
			for i := range list {
				s := &list[i]
				ended := "active"
				if !s.Active() {
					ended = dateTime(s.Ended)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, dateTime(s.Started), ended, routeText(s.Route), len(s.Doses), checkResult(s))
			}
			return tw.Flush()
		},
	}
	flags.register(c)
	c.Flags().IntVar(&limit, "limit", 20, fmt.Sprintf("how many sessions, newest first (1 to %d)", sessionListLimitMax))
	return c
}

func newSessionShowCommand() *cobra.Command {
	var flags agentFlags
	c := &cobra.Command{
		Use:     "show ID",
		Short:   "Show one session: doses, baseline, blood-pressure schedule, check",
		Example: `  vigil session show s-abcdefghijklmnop --config /etc/vigil/vigil.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := sessionIDArg(args[0])
			if err != nil {
				return err
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			var ans sessionAnswer
			if err := client.get(cmd.Context(), "/api/v1/sessions/"+url.PathEscape(id), "showing "+id, &ans); err != nil {
				return err
			}
			if ans.Session == nil {
				return errors.New("the agent answered without a session")
			}
			writeSession(cmd.OutOrStdout(), ans.Session)
			return nil
		},
	}
	flags.register(c)
	return c
}

// exportFormats are the formats of "vigil session export"
// (agent/sessionexport.go).
var exportFormats = []string{"csv", "json", "fhir"}

func newSessionExportCommand() *cobra.Command {
	var (
		flags  agentFlags
		format string
		output string
	)
	c := &cobra.Command{
		Use:   "export ID [--format csv|json|fhir] [-o FILE]",
		Short: "Export a session's readings, alarms and check (CSV, JSON or FHIR R4)",
		Long: `Export one session's record from the agent's store: csv (a header row, one
row per reading with its UCUM unit and the session id), json (the whole
record), or fhir (an R4 Bundle of Observations coded with MDC and LOINC).
The clinic reference is never part of an export.

The export goes to standard output, or with -o to FILE: written to a
temporary file beside it and renamed into place once complete (mode 0640),
so FILE is never left half-written. An export the agent cuts short is
reported as an error (exit 1).`,
		Example: `  vigil session export s-abcdefghijklmnop --format fhir -o session.fhir.json --config /etc/vigil/vigil.yaml
  vigil session export s-abcdefghijklmnop --format csv --addr 127.0.0.1:9817 > session.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := sessionIDArg(args[0])
			if err != nil {
				return err
			}
			if !slices.Contains(exportFormats, format) {
				return errors.New("--format must be csv, json or fhir")
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			path := "/api/v1/sessions/" + url.PathEscape(id) + "/export?format=" + format
			check := newCompleteness(format)
			if output == "" || output == "-" {
				return client.download(cmd.Context(), path, "exporting "+id, cmd.OutOrStdout(), check)
			}
			if err := writeFileAtomic(output, true, func(w io.Writer) error {
				return client.download(cmd.Context(), path, "exporting "+id, w, check)
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Session %s exported as %s to %s\n", id, format, output)
			return nil
		},
	}
	flags.register(c)
	c.Flags().StringVar(&format, "format", "csv", "csv, json or fhir")
	c.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of standard output")
	return c
}

func newSessionReportCommand() *cobra.Command {
	var (
		flags  agentFlags
		output string
		force  bool
	)
	c := &cobra.Command{
		Use:   "report ID -o FILE",
		Short: "Write a session's report: one self-contained HTML page",
		Long: `Write one session's report as a self-contained HTML page: trend charts of
SpO2, pulse and blood pressure with the dose marker, alarm bands and baseline
lines; the minimum and maximum of each vital; the alarms and their
acknowledgements; the end-of-session check. The clinic reference is never
part of it.

-o is required. An existing FILE is not overwritten unless --force is given.
The page is written to a temporary file beside FILE and renamed into place
once complete (mode 0640).`,
		Example: `  vigil session report s-abcdefghijklmnop -o report.html --config /etc/vigil/vigil.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := sessionIDArg(args[0])
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				return errors.New("-o FILE is required: where to write the HTML report")
			}
			if !force {
				if _, err := os.Lstat(output); err == nil {
					return fmt.Errorf("%s exists; give --force to overwrite it", output)
				}
			}
			client, err := newSessionClient(&flags)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(output, force, func(w io.Writer) error {
				return client.download(cmd.Context(), "/api/v1/sessions/"+url.PathEscape(id)+"/report", "reporting "+id, w, newCompleteness("html"))
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Report of session %s written to %s\n", id, output)
			return nil
		},
	}
	flags.register(c)
	c.Flags().StringVarP(&output, "output", "o", "", "the HTML file to write (required)")
	c.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return c
}

// sessionIDArg checks a session id given on the command line before it goes
// into a URL. The text is not quoted back: a chart number typed in the wrong
// place would otherwise be printed and sent to the agent's URL log.
func sessionIDArg(arg string) (string, error) {
	id := strings.TrimSpace(arg)
	if !session.ValidID(id) {
		return "", errors.New(`not a session id: ids are "s-" and 16 letters and digits, as shown by "vigil session list"`)
	}
	return id, nil
}

// ---------------------------------------------------------------- agent calls

// sessionClient calls the running agent's session API.
type sessionClient struct {
	base string
	call *http.Client // start, dose, end, list, show
	load *http.Client // export, report
}

func newSessionClient(f *agentFlags) (*sessionClient, error) {
	base, err := f.baseURL()
	if err != nil {
		return nil, err
	}
	return &sessionClient{
		base: base,
		call: f.httpClient(sessionCallTimeout),
		load: f.httpClient(sessionDownloadTimeout),
	}, nil
}

// sessionChange is the body of POST /api/v1/session/{start,dose,end}. The
// clinic reference travels only here, in the body.
type sessionChange struct {
	Route     string `json:"route,omitempty"`
	ClinicRef string `json:"clinic_ref,omitempty"`
	By        string `json:"by"`
}

// sessionAnswer is the agent's answer about one session.
type sessionAnswer struct {
	OK      bool             `json:"ok"`
	Error   string           `json:"error"`
	Active  bool             `json:"active"`
	Session *session.Session `json:"session"`
}

// unreachable is the error of a request that got no answer.
func (c *sessionClient) unreachable(err error) error {
	return fmt.Errorf("cannot reach the agent at %s (is vigil running, and is this its http.listen? point at it with --config FILE or --addr HOST:PORT): %w", c.base, err)
}

// change posts start, dose or end and returns the agent's answer.
func (c *sessionClient) change(ctx context.Context, action string, body sessionChange) (sessionAnswer, error) {
	body.By = strings.TrimSpace(body.By)
	data, err := json.Marshal(body)
	if err != nil {
		return sessionAnswer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/session/"+action, bytes.NewReader(data))
	if err != nil {
		return sessionAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.call.Do(req)
	if err != nil {
		return sessionAnswer{}, c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := readAnswer(resp)
	if err != nil {
		return sessionAnswer{}, fmt.Errorf("session %s refused: %w", action, err)
	}
	// The agent has acted: an answer this command cannot read must not
	// look like a refusal, or the user would repeat the start or the dose.
	var ans sessionAnswer
	err = json.Unmarshal(raw, &ans)
	if err == nil && (ans.Session == nil || !session.ValidID(ans.Session.ID)) {
		err = errors.New("no session in it")
	}
	if err != nil {
		return sessionAnswer{}, fmt.Errorf(`the agent accepted the session %s, but its answer is unreadable (%v): see "vigil session list"`, action, err)
	}
	return ans, nil
}

// get reads the JSON answer of a GET into v.
func (c *sessionClient) get(ctx context.Context, path, what string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.call.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := readAnswer(resp)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: agent answered %s with an unreadable answer: %v", what, resp.Status, err)
	}
	return nil
}

// readAnswer reads a JSON answer of the agent. A refusal (an error status,
// or "ok": false) is an error carrying the agent's "error" text.
func readAnswer(resp *http.Response) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSessionAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the agent's answer: %w", err)
	}
	if len(body) > maxSessionAnswer {
		return nil, fmt.Errorf("the agent's answer is larger than %d bytes", maxSessionAnswer)
	}
	var head struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &head) != nil {
		// Not JSON: an agent without the session API ("404 page not
		// found"), or something else listening there.
		if snippet := firstLine(body); snippet != "" {
			return nil, fmt.Errorf("agent answered %s: %s", resp.Status, snippet)
		}
		return nil, fmt.Errorf("agent answered %s without a result", resp.Status)
	}
	if resp.StatusCode != http.StatusOK || !head.OK {
		if head.Error == "" {
			return nil, fmt.Errorf("agent answered %s", resp.Status)
		}
		return nil, errors.New(head.Error)
	}
	return body, nil
}

// firstLine is the first line of an answer that is not JSON, short and
// printable, to show in an error.
func firstLine(body []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	line = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, line)
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	return line
}

// download copies a file the agent serves (an export or the report) to w,
// and fails when the agent refused it or cut it short.
func (c *sessionClient) download(ctx context.Context, path, what string, w io.Writer, check *completeness) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.load.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, err := readAnswer(resp)
		if err == nil {
			err = fmt.Errorf("agent answered %s", resp.Status)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := io.Copy(io.MultiWriter(w, check), resp.Body); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := check.err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ---------------------------------------------------------------- files

// writeFileAtomic writes path through fill: into a temporary file in the
// same directory, synced, then renamed into place, so path is never left
// half-written (an interrupted export leaves no file that looks complete).
// Without overwrite an existing path is refused, even one created while
// fill ran.
func writeFileAtomic(path string, overwrite bool, fill func(io.Writer) error) (err error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Set explicitly: CreateTemp makes 0600, and the umask must not widen
	// or narrow what the records staff group may read.
	if err := tmp.Chmod(exportFileMode); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if overwrite {
		return os.Rename(tmp.Name(), path)
	}
	// A hard link fails when path exists, where a rename would replace it.
	linkErr := os.Link(tmp.Name(), path)
	switch {
	case linkErr == nil:
		os.Remove(tmp.Name())
		return nil
	case errors.Is(linkErr, fs.ErrExist):
		return fmt.Errorf("%s exists; give --force to overwrite it", path)
	}
	// A file system without hard links (a FAT USB stick): check, then
	// rename.
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists; give --force to overwrite it", path)
	}
	return os.Rename(tmp.Name(), path)
}

// completeness recognises a file the agent cut short. The agent streams an
// export after its 200 status, so an error half-way (the store failing)
// ends the body early without any other sign.
type completeness struct {
	format string
	n      int64
	tail   []byte // the last bytes written, at most len(htmlEnd)+16

	// JSON documents: nesting depth outside strings.
	depth             int
	opened, closed    bool
	inString, escaped bool
}

const htmlEnd = "</html>"

func newCompleteness(format string) *completeness { return &completeness{format: format} }

func (c *completeness) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	keep := len(htmlEnd) + 16
	c.tail = append(c.tail, p[max(0, len(p)-keep):]...)
	if len(c.tail) > keep {
		c.tail = c.tail[len(c.tail)-keep:]
	}
	if c.format == "json" || c.format == "fhir" {
		for _, b := range p {
			c.scanJSON(b)
		}
	}
	return len(p), nil
}

func (c *completeness) scanJSON(b byte) {
	switch {
	case c.inString:
		switch {
		case c.escaped:
			c.escaped = false
		case b == '\\':
			c.escaped = true
		case b == '"':
			c.inString = false
		}
	case b == '"':
		c.inString = true
	case b == '{' || b == '[':
		c.depth++
		c.opened = true
	case b == '}' || b == ']':
		c.depth--
		if c.depth == 0 {
			c.closed = true
		}
	}
}

func (c *completeness) err() error {
	if c.n == 0 {
		return errors.New("the agent sent an empty file")
	}
	short := fmt.Errorf("the agent's file ended early after %d bytes: it is incomplete", c.n)
	switch c.format {
	case "json", "fhir":
		if !c.opened || !c.closed || c.depth != 0 || c.inString {
			return short
		}
	case "csv":
		// encoding/csv ends every record with a newline.
		if c.tail[len(c.tail)-1] != '\n' {
			return short
		}
	case "html":
		if !strings.HasSuffix(strings.ToLower(strings.TrimSpace(string(c.tail))), htmlEnd) {
			return short
		}
	}
	return nil
}

// ---------------------------------------------------------------- printing

// clock is a time of day in the local zone, as staff read the room's clock.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05")
}

// dateTime is a date and time in the local zone.
func dateTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func routeText(r session.Route) string {
	if r == "" {
		return "not recorded"
	}
	return string(r)
}

// checkResult is a session's end-check outcome in one word.
func checkResult(s *session.Session) string {
	switch {
	case s.Check != nil && s.Check.Pass:
		return "pass"
	case s.Check != nil:
		return "fail"
	case s.Active():
		return "-"
	}
	return "none"
}

// displayUnit writes a UCUM unit as staff read it (protocols.md 5.3 gives
// the UCUM forms).
func displayUnit(ucum string) string {
	switch ucum {
	case "mm[Hg]":
		return "mmHg"
	case "%":
		return "%"
	}
	return ucum
}

// measured writes a metric's value with its unit: "97 %", "128 mmHg".
func measured(metric string, v float64) string {
	s := strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	if id, ok := drivers.MetricByName(metric); ok {
		return s + " " + displayUnit(id.Info().Unit)
	}
	return s
}

// metricOrder sorts metric names in catalogue order, unknown names last.
func metricOrder(a, b string) int {
	ia, oka := drivers.MetricByName(a)
	ib, okb := drivers.MetricByName(b)
	switch {
	case oka && okb:
		return cmp.Compare(ia, ib)
	case oka:
		return -1
	case okb:
		return 1
	}
	return cmp.Compare(a, b)
}

// span writes a duration as "2 h 05 min", "12 min 30 s" or "45 s".
func span(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case h > 0:
		return fmt.Sprintf("%d h %02d min", h, m)
	case m > 0:
		return fmt.Sprintf("%d min %02d s", m, s)
	}
	return fmt.Sprintf("%d s", s)
}

// writeBaseline prints the pre-dose baseline.
func writeBaseline(w io.Writer, s *session.Session) {
	if !s.Dosed() {
		fmt.Fprintln(w, "Baseline: fixed at the first dose.")
		return
	}
	if len(s.Baseline) == 0 {
		fmt.Fprintln(w, "Baseline: no valid reading before the first dose.")
	} else {
		fmt.Fprintln(w, "Baseline (the last valid readings before the first dose):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, metric := range slices.SortedFunc(maps.Keys(s.Baseline), metricOrder) {
			m := s.Baseline[metric]
			fmt.Fprintf(tw, "  %s\t%s\tat %s\tfrom %s\n", metric, measured(metric, m.Value), clock(m.At), m.Device)
		}
		tw.Flush()
	}
	if len(s.BaselineMissing) > 0 {
		fmt.Fprintf(w, "  missing: %s\n", strings.Join(s.BaselineMissing, ", "))
	}
	if s.BaselineWarning != "" {
		fmt.Fprintf(w, "WARNING: %s\n", s.BaselineWarning)
	}
}

// writeCheck prints the end-of-session check.
func writeCheck(w io.Writer, c *session.Check) {
	if c == nil {
		fmt.Fprintln(w, "No end-of-session check recorded.")
		return
	}
	result := "FAIL"
	if c.Pass {
		result = "PASS"
	}
	fmt.Fprintf(w, "End-of-session check at %s: %s (every vital within %s%% of its baseline: %s; observation complete: %s)\n",
		clock(c.At), result, strconv.FormatFloat(c.Tolerance*100, 'f', -1, 64), yesNo(c.VitalsPass), yesNo(c.ObservationComplete))
	if len(c.Vitals) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VITAL\tBASELINE\t\tLATEST\tCHANGE\tRESULT")
		for _, v := range c.Vitals {
			base, latest, change := "-", "-", "-"
			if v.Baseline != nil {
				base = measured(v.Metric, v.Baseline.Value)
			}
			if v.Latest != nil {
				latest = measured(v.Metric, v.Latest.Value)
			}
			if v.ChangePercent != nil {
				change = fmt.Sprintf("%+.1f%%", *v.ChangePercent)
			}
			res := string(v.Result)
			if v.Result != session.ResultPass && v.Reason != "" {
				res += ": " + v.Reason
			}
			fmt.Fprintf(tw, "  %s\t%s\t->\t%s\t%s\t%s\n", v.Metric, base, latest, change, res)
		}
		tw.Flush()
	}
	minimum := span(time.Duration(c.MinObservationSeconds * float64(time.Second)))
	observed := span(time.Duration(c.ObservedSeconds * float64(time.Second)))
	if c.ObservationComplete {
		fmt.Fprintf(w, "Observation: complete, %s since the last dose (minimum %s).\n", observed, minimum)
	} else {
		fmt.Fprintf(w, "Observation: NOT complete, %s since the last dose (minimum %s).\n", observed, minimum)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeSession prints one session in full, for "vigil session show".
func writeSession(w io.Writer, s *session.Session) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Session\t%s\n", s.ID)
	fmt.Fprintf(tw, "Room\t%s\n", s.Room)
	fmt.Fprintf(tw, "Route\t%s\n", routeText(s.Route))
	fmt.Fprintf(tw, "Started\t%s\n", s.Started.Local().Format("2006-01-02 15:04:05"))
	if len(s.Doses) == 0 {
		fmt.Fprintf(tw, "Doses\tnone\n")
	} else {
		times := make([]string, len(s.Doses))
		for i, d := range s.Doses {
			times[i] = clock(d)
		}
		fmt.Fprintf(tw, "Doses\t%d: %s\n", len(s.Doses), strings.Join(times, ", "))
	}
	if s.Active() {
		fmt.Fprintf(tw, "Ended\tactive (running %s)\n", span(time.Since(s.Started)))
	} else {
		fmt.Fprintf(tw, "Ended\t%s (after %s)\n", s.Ended.Local().Format("2006-01-02 15:04:05"), span(s.Ended.Sub(s.Started)))
	}
	tw.Flush()
	writeBaseline(w, s)

	sc := &s.Schedule
	if s.Dosed() {
		fmt.Fprintln(w, "Blood-pressure schedule:")
		if !sc.NextDue.IsZero() {
			state := ""
			if sc.Overdue {
				state = " (overdue)"
			}
			fmt.Fprintf(w, "  next due at %s%s\n", clock(sc.NextDue), state)
		}
		for _, r := range sc.Taken {
			late := ""
			if r.Late {
				late = " (late)"
			}
			fmt.Fprintf(w, "  taken at %s, due %s%s\n", clock(r.At), clock(r.Due), late)
		}
		if sc.MissedCount > 0 {
			missed := make([]string, len(sc.Missed))
			for i, m := range sc.Missed {
				missed[i] = clock(m)
			}
			fmt.Fprintf(w, "  missed: %d (due %s)\n", sc.MissedCount, strings.Join(missed, ", "))
		}
		if sc.AdvisoryOn {
			fmt.Fprintf(w, "  advisory on: a scheduled reading is missing since %s\n", clock(sc.MissingSince))
		}
		if sc.NextDue.IsZero() && len(sc.Taken) == 0 && sc.MissedCount == 0 {
			fmt.Fprintln(w, "  no scheduled reading recorded")
		}
	}
	if s.Active() {
		fmt.Fprintln(w, "End-of-session check: when the session ends.")
		return
	}
	writeCheck(w, s.Check)
}
