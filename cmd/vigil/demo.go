package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/simulator"
)

const (
	demoDriver   = "masimo-ascii"
	demoDevice   = "oximeter-1"
	demoScenario = "demo"
	demoHTTP     = "127.0.0.1:9817"
)

func newDemoCommand() *cobra.Command {
	var scenarioArg string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run Vigil against a simulated oximeter: nothing to install",
		Long: `Start a simulated Masimo oximeter on a pseudo-terminal, the agent reading it
through the real serial path, an embedded MQTT broker on 127.0.0.1 (port 1883
or the next free one) and the metrics endpoint on 127.0.0.1:9817 (or a free
port). The oximeter plays a normal reading, then a desaturation, then the
recovery, looping. Ctrl-C stops everything.`,
		Example: `  go run ./cmd/vigil demo
  vigil demo --scenario sensor-off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), scenarioArg)
		},
	}
	cmd.Flags().StringVar(&scenarioArg, "scenario", demoScenario, "scenario to play: a built-in name ("+strings.Join(simulator.BuiltinNames(), ", ")+") or a YAML file")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, scenarioArg string) error {
	logger := slog.Default()
	drv, ok := drivers.Lookup(demoDriver)
	if !ok {
		return fmt.Errorf("driver %s is not built in", demoDriver)
	}
	scenario, err := loadScenario(scenarioArg)
	if err != nil {
		return err
	}

	var printMu sync.Mutex
	say := func(format string, args ...any) {
		printMu.Lock()
		defer printMu.Unlock()
		fmt.Fprintf(out, format, args...)
	}

	sim, err := simulator.NewDevice(simulator.Options{
		Driver:   drv,
		Scenario: scenario,
		Logger:   logger,
		OnStep: func(step simulator.Step) {
			say("scenario %s: %s\n", scenario.Name, step.Describe())
		},
	})
	if err != nil {
		return fmt.Errorf("simulated oximeter: %w", err)
	}
	defer sim.Close()

	httpListen := demoHTTP
	if l, err := net.Listen("tcp", demoHTTP); err != nil {
		httpListen = "127.0.0.1:0" // 9817 is taken, perhaps by a running agent
	} else {
		l.Close()
	}
	// The demo's store and audit log go to a fresh directory (kept after
	// the demo, to be read), not to /var/lib/vigil, which a demo user
	// cannot write.
	stateDir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return fmt.Errorf("demo state directory: %w", err)
	}
	auditLog := filepath.Join(stateDir, "audit.jsonl")
	yaml := fmt.Sprintf(`site: demo
room: room-1
devices:
  - id: %s
    driver: %s
    port: %s
mqtt:
  url: embedded
  listen: 127.0.0.1:1883
http:
  listen: %s
alarms:
  audit_log: %s
store:
  path: %s
`, demoDevice, demoDriver, sim.Path(), httpListen, auditLog, filepath.Join(stateDir, "vigil.db"))
	cfg, err := config.Parse("demo config", []byte(yaml))
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	simErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sim.Run(ctx); err != nil {
			simErr <- err
			cancel()
		}
	}()

	err = agent.Run(ctx, cfg, agent.Options{
		Logger:                 logger,
		Version:                version,
		Revision:               revision(),
		EmbeddedBrokerNextFree: true,
		OnReady: func(ep agent.Endpoints) {
			host, port := brokerHostPort(ep.MQTT)
			say(`Vigil demo is running. Press Ctrl-C to stop.

  simulated %s oximeter: %s
  metrics:  %s/metrics
  health:   %s/healthz  %s/readyz
  MQTT:     %s (embedded broker)
  watch:    mosquitto_sub -h %s -p %s -t 'vigil/#' -v
  alarms:   %s/api/v1/alarms  (vigil alarms list --addr %s)
  session:  vigil session start --by you --addr %s  (then dose, end, report)
  audit:    %s (and the store beside it)
  scenario: %s (%s)

`, drv.Name, sim.Path(), ep.HTTP, ep.HTTP, ep.HTTP, ep.MQTT, host, port, ep.HTTP, ep.HTTP, ep.HTTP, auditLog, scenario.Name, scenario.Description)
		},
	})
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err := <-simErr:
		return fmt.Errorf("simulated oximeter: %w", err)
	default:
	}
	return nil
}

func brokerHostPort(url string) (string, string) {
	hp := url
	if i := strings.Index(hp, "://"); i >= 0 {
		hp = hp[i+3:]
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, "1883"
	}
	return host, port
}

// loadScenario takes a built-in name or a YAML file path.
func loadScenario(arg string) (*simulator.Scenario, error) {
	if s, ok := simulator.BuiltinScenario(arg); ok {
		return s, nil
	}
	if !strings.ContainsAny(arg, "/.") {
		return nil, fmt.Errorf("unknown scenario %q (built in: %s; or give a YAML file)", arg, strings.Join(simulator.BuiltinNames(), ", "))
	}
	return simulator.LoadScenario(arg)
}
