package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/serialport"
	"github.com/vigil-monitor/vigil/drivers"
)

func newDevicesCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List serial ports with their USB identity",
		Long: `List the serial ports of this machine with USB vendor and product ids, serial
number, manufacturer, product and the stable /dev/serial/by-id path. Use the
by-id path or the usb: {vid, pid, serial} identity in the config: /dev/ttyUSB0
can become /dev/ttyUSB1 after a replug, those cannot.

With --config, each port that a configured device uses is marked with its id.
The DRIVERS column names drivers whose devices are known to use that USB id.

Pseudo-terminals (simulated devices) are not listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg *config.Config
			if configPath != "" {
				c, err := config.Load(configPath)
				if err != nil {
					printConfigProblems(cmd.ErrOrStderr(), err)
					return exitError{code: 1}
				}
				cfg = c
			}
			ports, err := serialport.List()
			if err != nil {
				return fmt.Errorf("listing serial ports: %w", err)
			}
			writeDeviceTable(cmd.OutOrStdout(), ports, cfg)
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file whose devices to mark")
	return cmd
}

func writeDeviceTable(w io.Writer, ports []serialport.PortInfo, cfg *config.Config) {
	if len(ports) == 0 {
		fmt.Fprintln(w, "No serial ports found. Is the USB-serial cable plugged in? (dmesg shows what the kernel saw)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tVID:PID\tSERIAL\tMANUFACTURER\tPRODUCT\tBY-ID\tCONFIGURED\tDRIVERS")
	for _, p := range ports {
		vidpid := "-"
		if p.IsUSB {
			vidpid = strings.ToLower(p.VID + ":" + p.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			p.Name, vidpid, dash(p.SerialNumber), dash(p.Manufacturer), dash(p.Product), dash(p.ByID),
			dash(configuredDevice(cfg, p)), dash(strings.Join(driversForUSB(vidpid), ",")))
	}
	tw.Flush()
}

// configuredDevice names the configured device that uses port p, if any.
func configuredDevice(cfg *config.Config, p serialport.PortInfo) string {
	if cfg == nil {
		return ""
	}
	for _, d := range cfg.Devices {
		if d.USB != nil {
			if p.IsUSB && strings.EqualFold(d.USB.VID, p.VID) && strings.EqualFold(d.USB.PID, p.PID) &&
				(d.USB.Serial == "" || d.USB.Serial == p.SerialNumber) {
				return d.ID
			}
			continue
		}
		if d.Port == p.Name || (p.ByID != "" && d.Port == p.ByID) {
			return d.ID
		}
		if resolved, err := filepath.EvalSymlinks(d.Port); err == nil && resolved == p.Name {
			return d.ID
		}
	}
	return ""
}

func driversForUSB(vidpid string) []string {
	var out []string
	for _, name := range drivers.Names() {
		d, _ := drivers.Lookup(name)
		for _, id := range d.USBIDs {
			if strings.EqualFold(id, vidpid) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
