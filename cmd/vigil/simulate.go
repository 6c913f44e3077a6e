package main

import (
	"context"
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
		connect     string
		rate        float64
		seed        uint64
		options     []string
	)
	cmd := &cobra.Command{
		Use:   "simulate DRIVER",
		Short: "Pretend to be a device: on a pseudo-terminal, or as a monitor over TCP",
		Long: `Play a device of the given driver with a scenario, speaking the device's
real protocol.

A serial device gets a pseudo-terminal: the first line on stdout is its path.
Point a device's "port:" at it (or at --link, a symlink that stays put when an
"unplug" event replaces the terminal). Devices that are talked to (an NIBP
module) answer the agent's commands.

A monitor that pushes over the network (hl7-mllp) connects to the agent's
listen address given with --connect, and the first line on stdout is that
address. Give its sender id with --option sender=ID.

Drivers: ` + strings.Join(drivers.Names(), ", ") + `
Scenarios: ` + strings.Join(simulator.BuiltinNames(), ", ") + `, or a YAML file`,
		Example: `  vigil simulate masimo-ascii --link /tmp/oximeter
  vigil simulate masimo-ascii --scenario desaturation
  vigil simulate contec-cms50 --option protocol=legacy
  vigil simulate suntech-advantage --link /tmp/nibp
  vigil simulate hl7-mllp --connect 127.0.0.1:2575 --option sender=KC261551373G
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
			opts, err := parseOptions(options)
			if err != nil {
				return err
			}
			if drv.Transport == drivers.TCPListen && connect != "" && opts["listen"] == nil {
				// The monitor's side of the agent's listen option.
				opts["listen"] = connect
			}
			if drv.Validate != nil {
				if err := drv.Validate(opts); err != nil {
					return fmt.Errorf("--option: %w", err)
				}
			}
			scenario, err := loadScenario(scenarioArg)
			if err != nil {
				return err
			}
			logger := slog.Default()
			onStep := func(step simulator.Step) {
				logger.Info("scenario step", "scenario", scenario.Name, "step", step.Describe())
			}
			if drv.Transport == drivers.TCPListen {
				if connect == "" {
					return fmt.Errorf("driver %s connects to the agent: give its listen address with --connect HOST:PORT", drv.Name)
				}
				return simulateOverTCP(cmd.Context(), cmd, drv, opts, scenario, rate, seed, connect, logger)
			}
			if connect != "" {
				return fmt.Errorf("--connect is for monitors that push over TCP; %s is a serial device", drv.Name)
			}
			sim, err := simulator.NewDevice(simulator.Options{
				Driver:        drv,
				DriverOptions: opts,
				Scenario:      scenario,
				Rate:          rate,
				Link:          link,
				Seed:          seed,
				Logger:        logger,
				OnStep:        onStep,
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
	cmd.Flags().StringVar(&connect, "connect", "", "for monitors that push over TCP (hl7-mllp): the agent's listen address")
	cmd.Flags().Float64Var(&rate, "rate", 0, "frames per second (0: the device's own rate)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the values' random noise")
	cmd.Flags().StringArrayVar(&options, "option", nil, "driver option KEY=VALUE, as in the config (repeatable)")
	return cmd
}

func simulateOverTCP(ctx context.Context, cmd *cobra.Command, drv *drivers.Driver, opts drivers.Options,
	scenario *simulator.Scenario, rate float64, seed uint64, addr string, logger *slog.Logger) error {
	sender, err := simulator.NewTCPSender(simulator.TCPOptions{
		Driver:        drv,
		DriverOptions: opts,
		Scenario:      scenario,
		Rate:          rate,
		Seed:          seed,
		Addr:          addr,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), addr)
	return sender.Run(ctx)
}

// parseOptions reads KEY=VALUE driver options; values stay strings, as the
// drivers accept from YAML ("true" for booleans).
func parseOptions(kvs []string) (drivers.Options, error) {
	opts := drivers.Options{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--option %q: write KEY=VALUE", kv)
		}
		switch v {
		case "true":
			opts[k] = true
		case "false":
			opts[k] = false
		default:
			opts[k] = v
		}
	}
	return opts, nil
}
