package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent"
	"github.com/vigil-monitor/vigil/agent/config"
)

func newRunCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the monitoring agent (the daemon)",
		Long: `Run the agent: connect to every device in the config file, publish each
reading to MQTT and serve Prometheus metrics and health checks on http.listen.

Devices that are unplugged or switched off are retried every 2 s at most, so
the agent can start before the devices do. SIGINT or SIGTERM stops it cleanly:
devices are closed, the room's MQTT status is set to offline, and it exits 0.`,
		Example: `  vigil run --config /etc/vigil/vigil.yaml
  vigil run --config vigil.yaml --log-level debug --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config FILE is required (see configs/vigil.yaml for an example)")
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				printConfigProblems(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			return agent.Run(cmd.Context(), cfg, agent.Options{
				Logger:   slog.Default(),
				Version:  version,
				Revision: revision(),
			})
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path of the YAML config file")
	return cmd
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with config files",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Check a config file and print every problem with its line and key",
		Long: `Check a config file without starting anything. Every problem is printed
as FILE:LINE: KEY: what is wrong. The exit status is 0 when the file is
valid and 1 when it has any problem.`,
		Example: `  vigil config check /etc/vigil/vigil.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				printConfigProblems(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (site %s, room %s, %d device(s))\n", args[0], cfg.Site, cfg.Room, len(cfg.Devices))
			return nil
		},
	})
	return cmd
}

func printConfigProblems(w interface{ Write([]byte) (int, error) }, err error) {
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p.Error())
		}
		fmt.Fprintf(w, "%d problem(s) found\n", len(problems))
		return
	}
	fmt.Fprintln(w, err)
}
