package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/simulator"
)

func newSimulateCommand() *cobra.Command {
	var (
		scenarioArg string
		link        string
		rate        float64
		seed        uint64
	)
	cmd := &cobra.Command{
		Use:   "simulate DRIVER",
		Short: "Pretend to be a device on a pseudo-terminal",
		Long: `Create a pseudo-terminal that behaves like a device of the given driver and
stream that device's real protocol bytes into it until stopped. The first line
on stdout is the terminal's path: point a device's "port:" at it (or at
--link, a symlink that stays put when an "unplug" event replaces the terminal).

Drivers: ` + strings.Join(drivers.Names(), ", ") + `
Scenarios: ` + strings.Join(simulator.BuiltinNames(), ", ") + `, or a YAML file`,
		Example: `  vigil simulate masimo-ascii --link /tmp/oximeter
  vigil simulate masimo-ascii --scenario desaturation
  vigil simulate masimo-ascii --scenario my-scenario.yaml --rate 500`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			drv, ok := drivers.Lookup(args[0])
			if !ok {
				return fmt.Errorf("unknown driver %q (known: %s)", args[0], strings.Join(drivers.Names(), ", "))
			}
			if drv.NewEncoder == nil {
				return fmt.Errorf("driver %s has no simulator", drv.Name)
			}
			if rate < 0 {
				return fmt.Errorf("--rate %v: must be positive", rate)
			}
			scenario, err := loadScenario(scenarioArg)
			if err != nil {
				return err
			}
			logger := slog.Default()
			sim, err := simulator.NewDevice(simulator.Options{
				Driver:   drv,
				Scenario: scenario,
				Rate:     rate,
				Link:     link,
				Seed:     seed,
				Logger:   logger,
				OnStep: func(step simulator.Step) {
					logger.Info("scenario step", "scenario", scenario.Name, "step", step.Describe())
				},
			})
			if err != nil {
				return err
			}
			defer sim.Close()
			fmt.Fprintln(cmd.OutOrStdout(), sim.Path())
			return sim.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&scenarioArg, "scenario", "normal", "built-in scenario name or YAML file")
	cmd.Flags().StringVar(&link, "link", "", "also make a symlink at this path pointing at the terminal")
	cmd.Flags().Float64Var(&rate, "rate", 0, "frames per second (0: the device's own rate)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the values' random noise")
	return cmd
}
