package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newAlarmsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alarms",
		Short: "List and acknowledge the running agent's alarms",
	}
	var listFlags agentFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the alarms in force, highest priority first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := listFlags.baseURL()
			if err != nil {
				return err
			}
			client := listFlags.httpClient(10 * time.Second)
			resp, err := client.Get(base + "/api/v1/alarms")
			if err != nil {
				return fmt.Errorf("cannot reach the agent at %s (is vigil running, and is this its http.listen?): %w", base, err)
			}
			defer resp.Body.Close()
			var alarms []struct {
				AlarmID  string    `json:"alarm_id"`
				Priority string    `json:"priority"`
				Kind     string    `json:"kind"`
				State    string    `json:"state"`
				Text     string    `json:"text"`
				Onset    time.Time `json:"onset"`
			}
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&alarms); err != nil {
				return fmt.Errorf("agent answered %s without an alarm list", resp.Status)
			}
			if p, err := pauseState(client, base); err == nil && p != "" {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			if len(alarms) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No alarms.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ALARM\tPRIORITY\tKIND\tSTATE\tSINCE\tTEXT")
			for _, a := range alarms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.AlarmID, a.Priority, a.Kind, a.State, a.Onset.Local().Format("15:04:05"), a.Text)
			}
			return tw.Flush()
		},
	}
	listFlags.register(list)

	var ackFlags agentFlags
	var by string
	ack := &cobra.Command{
		Use:   "ack ALARM-ID",
		Short: "Acknowledge an alarm (its signal stops until the condition clears)",
		Long: `Acknowledge one alarm of the running agent, as shown by "vigil alarms list".
Escalation to the next tier stops. A latched alarm whose condition has
already cleared ends. The acknowledgement is logged with --by.`,
		Example: `  vigil alarms ack spo2-low-medium/oximeter-1 --by nurse-a --config /etc/vigil/vigil.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(by) == "" {
				return errors.New("--by NAME is required: who acknowledges (a staff name or station, never a patient)")
			}
			base, err := ackFlags.baseURL()
			if err != nil {
				return err
			}
			client := ackFlags.httpClient(10 * time.Second)
			u := base + "/api/v1/alarms/ack/" + args[0] + "?by=" + url.QueryEscape(by)
			resp, err := client.Post(u, "application/json", nil)
			if err != nil {
				return fmt.Errorf("cannot reach the agent at %s: %w", base, err)
			}
			defer resp.Body.Close()
			var res struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			}
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res); err != nil {
				return fmt.Errorf("agent answered %s without a result", resp.Status)
			}
			if !res.OK {
				return fmt.Errorf("acknowledging %s refused: %s", args[0], res.Error)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s acknowledged by %s\n", args[0], by)
			return nil
		},
	}
	ackFlags.register(ack)
	ack.Flags().StringVar(&by, "by", "", "who acknowledges")
	cmd.AddCommand(list, ack, newPauseCommand("pause"), newPauseCommand("resume"))
	return cmd
}

// newPauseCommand makes "vigil alarms pause" or "vigil alarms resume".
func newPauseCommand(verb string) *cobra.Command {
	var flags agentFlags
	var by string
	var d time.Duration
	c := &cobra.Command{
		Use:   verb,
		Short: "Pause notifications of the alarms in force for a bounded time",
		Long: `Pause notifications of the alarms now in force, for --for (default 2m),
never longer than the agent's alarms.pause_max. The alarms stay on the
local display, in "vigil alarms list" and on MQTT. A NEW alarm, or one that
rises to a higher priority, still notifies during the pause, and every end
is still sent. The pause is logged and audited with --by.`,
		Example: `  vigil alarms pause --for 90s --by nurse-a --config /etc/vigil/vigil.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(by) == "" {
				return fmt.Errorf("--by NAME is required: who %ss (a staff name or station, never a patient)", verb)
			}
			base, err := flags.baseURL()
			if err != nil {
				return err
			}
			q := url.Values{"by": {by}}
			if verb == "pause" && d != 0 {
				if d < 0 {
					return errors.New("--for must be positive")
				}
				q.Set("for", d.String())
			}
			client := flags.httpClient(10 * time.Second)
			resp, err := client.Post(base+"/api/v1/alarms/"+verb+"?"+q.Encode(), "application/json", nil)
			if err != nil {
				return fmt.Errorf("cannot reach the agent at %s: %w", base, err)
			}
			defer resp.Body.Close()
			var res struct {
				OK     bool       `json:"ok"`
				Error  string     `json:"error"`
				Paused bool       `json:"paused"`
				Until  *time.Time `json:"until"`
			}
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res); err != nil {
				return fmt.Errorf("agent answered %s without a result", resp.Status)
			}
			if !res.OK {
				return fmt.Errorf("%s refused: %s", verb, res.Error)
			}
			if res.Paused && res.Until != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "Notifications paused until %s (new or higher alarms still notify)\n", res.Until.Local().Format("15:04:05"))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "Notifications not paused")
			}
			return nil
		},
	}
	if verb == "resume" {
		c.Short = "End a notification pause"
		c.Long = "End the running agent's notification pause at once. Logged and audited with --by."
		c.Example = `  vigil alarms resume --by nurse-a --config /etc/vigil/vigil.yaml`
	}
	flags.register(c)
	c.Flags().StringVar(&by, "by", "", "who "+verb+"s")
	if verb == "pause" {
		c.Flags().DurationVar(&d, "for", 0, "how long (default 2m; at most the agent's alarms.pause_max)")
	}
	return c
}

// pauseState is a line saying until when notifications are paused, or ""
// when they are not.
func pauseState(client *http.Client, base string) (string, error) {
	resp, err := client.Get(base + "/api/v1/alarms/pause")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var res struct {
		Paused bool       `json:"paused"`
		Until  *time.Time `json:"until"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res); err != nil {
		return "", err
	}
	if !res.Paused || res.Until == nil {
		return "", nil
	}
	return "Notifications paused until " + res.Until.Local().Format("15:04:05") + " (new or higher alarms still notify).", nil
}
