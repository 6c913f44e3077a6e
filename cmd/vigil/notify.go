package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/notify"
)

func newNotifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Work with notification channels",
	}
	var (
		configPath string
		channel    string
	)
	test := &cobra.Command{
		Use:   "test --config FILE [--channel NAME]",
		Short: "Send a test message through each notification channel",
		Long: `Send a low-priority message marked TEST through every channel in the config's
notify section (or only --channel), and print each channel's result. Run it at
the start of a shift: a channel that fails here would fail for a real alarm.
The exit status is 1 when any channel did not deliver.`,
		Example: `  vigil notify test --config /etc/vigil/vigil.yaml
  vigil notify test --config /etc/vigil/vigil.yaml --channel nurses-ntfy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config FILE is required")
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				printConfigProblems(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			if len(cfg.Notify.Channels) == 0 {
				return fmt.Errorf("%s has no notify channels", configPath)
			}
			results, err := agent.TestChannels(cmd.Context(), cfg, channel, slog.Default())
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range results {
				line := fmt.Sprintf("%-24s %-13s %-10s %s", r.Channel, r.Type, r.Result.Verdict, r.Took.Round(1e6))
				if r.Result.Err != nil {
					line += "  " + r.Result.Err.Error()
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
				if r.Result.Verdict != notify.Delivered {
					failed++
				}
			}
			if failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d channel(s) did not deliver\n", failed, len(results))
				return exitError{code: 1}
			}
			return nil
		},
	}
	test.Flags().StringVarP(&configPath, "config", "c", "", "config file with the notify channels")
	test.Flags().StringVar(&channel, "channel", "", "test only this channel")
	cmd.AddCommand(test)
	return cmd
}
