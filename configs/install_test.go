// Tests of the install on a room mini-PC: the systemd unit, the udev rules
// and the .deb (README.md, "Install on a room mini-PC"; issue 6). Each file
// is checked by the tool that will load it where the tool exists here
// (systemd-analyze, udevadm, dpkg-deb), and by reading it.
package configs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all" // the registry, complete
)

const (
	unitFile      = "systemd/vigil.service"
	udevRulesFile = "udev/99-vigil.rules"
	packagingDir  = "packaging"
)

// ---- systemd unit ----------------------------------------------------------

// unitEntries reads a systemd unit file into section -> key -> values (a key
// may repeat: DeviceAllow=, After=). It fails the test on a line that is
// neither a comment, a section header nor key=value.
func unitEntries(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
			continue
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: a continued line; this test reads one key per line", file, i+1)
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: %q is not key=value inside a section", file, i+1, line)
		}
		key = strings.TrimSpace(key)
		out[section][key] = append(out[section][key], strings.TrimSpace(value))
	}
	return out
}

// TestSystemdUnitSettings holds vigil.service to the settings issue 6 asks
// for, each of which the file explains in a comment.
func TestSystemdUnitSettings(t *testing.T) {
	unit := unitEntries(t, unitFile)
	want := map[string]map[string][]string{
		"Unit": {
			"StartLimitIntervalSec": {"0"},
		},
		"Service": {
			"Type":                       {"notify"},
			"NotifyAccess":               {"main"},
			"WatchdogSec":                {"30"},
			"ExecStart":                  {"/usr/bin/vigil run --config /etc/vigil/vigil.yaml"},
			"User":                       {"vigil"},
			"Group":                      {"vigil"},
			"SupplementaryGroups":        {"dialout"},
			"StateDirectory":             {"vigil"},
			"StateDirectoryMode":         {"0750"},
			"ConfigurationDirectory":     {"vigil"},
			"ConfigurationDirectoryMode": {"0750"},
			"Restart":                    {"on-failure"},
			"RestartSec":                 {"2s"},
			"ProtectSystem":              {"strict"},
			"ProtectHome":                {"yes"},
			"PrivateTmp":                 {"yes"},
			"NoNewPrivileges":            {"yes"},
			"ProtectKernelTunables":      {"yes"},
			"ProtectKernelModules":       {"yes"},
			"ProtectKernelLogs":          {"yes"},
			"ProtectControlGroups":       {"yes"},
			"RestrictAddressFamilies":    {"AF_UNIX AF_INET AF_INET6 AF_NETLINK"},
			"RestrictNamespaces":         {"yes"},
			"LockPersonality":            {"yes"},
			"MemoryDenyWriteExecute":     {"yes"},
			"RestrictRealtime":           {"yes"},
			"SystemCallArchitectures":    {"native"},
			"CapabilityBoundingSet":      {""},
			"DevicePolicy":               {"closed"},
			"DeviceAllow":                {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyS rw"},
		},
		"Install": {
			"WantedBy": {"multi-user.target"},
		},
	}
	for section, keys := range want {
		for key, values := range keys {
			got, ok := unit[section][key]
			if !ok {
				t.Errorf("[%s] %s= is missing, want %q", section, key, values)
				continue
			}
			if !slices.Equal(got, values) {
				t.Errorf("[%s] %s = %q, want %q", section, key, got, values)
			}
		}
	}
	// PrivateDevices=yes would hide every serial port; ProtectClock=yes
	// forbids the adjtimex(2) read the clock-unsynchronised check makes.
	for _, key := range []string{"PrivateDevices", "ProtectClock", "DynamicUser"} {
		if v, ok := unit["Service"][key]; ok {
			t.Errorf("[Service] %s = %q: must not be set (see the unit's comments)", key, v)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checks on a copy of the unit.
// systemd-analyze verify requires ExecStart's program to exist, and
// /usr/bin/vigil is not installed here, so the copy's ExecStart is /bin/true:
// the unit's syntax and settings are what is verified, not the binary.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	execStart := regexp.MustCompile(`(?m)^ExecStart=.*$`)
	if n := len(execStart.FindAll(raw, -1)); n != 1 {
		t.Fatalf("%s has %d ExecStart lines, want 1", unitFile, n)
	}
	copied := execStart.ReplaceAll(raw, []byte("ExecStart=/bin/true"))
	dir := t.TempDir()
	unit := filepath.Join(dir, "vigil.service")
	if err := os.WriteFile(unit, copied, 0o644); err != nil {
		t.Fatal(err)
	}

	// verify reports unknown keys and bad values as warnings with exit
	// status 0: any output is a failure.
	if out := run(t, analyze, "verify", unit); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify has remarks:\n%s", out)
	}

	// The exposure score (0-100, printed as 0.0-10.0) of the hardening: 34
	// when written. A higher score means a protection was lost.
	out := run(t, analyze, "security", "--offline=yes", "--threshold=35", unit)
	if i := strings.Index(out, "Overall exposure level"); i >= 0 {
		t.Log(strings.TrimSpace(out[i:]))
	}
}

// ---- udev rules ------------------------------------------------------------

// udevPair is one KEY{attr}OP"value" of a rule line.
type udevPair struct {
	key, attr, op, value string
}

// udevRule is one non-comment line.
type udevRule struct {
	line  int
	pairs []udevPair
}

// udevKeyOps lists the keys the rules may use and the operators each takes
// (udev(7)). Keys marked with attr take a {name}.
var udevKeyOps = map[string]struct {
	ops  []string
	attr bool
}{
	"ACTION":     {ops: []string{"==", "!="}},
	"SUBSYSTEM":  {ops: []string{"==", "!="}},
	"SUBSYSTEMS": {ops: []string{"==", "!="}},
	"KERNEL":     {ops: []string{"==", "!="}},
	"KERNELS":    {ops: []string{"==", "!="}},
	"DRIVERS":    {ops: []string{"==", "!="}},
	"ATTRS":      {ops: []string{"==", "!="}, attr: true},
	"ENV":        {ops: []string{"==", "!=", "=", "+=", ":="}, attr: true},
	"TAG":        {ops: []string{"==", "!=", "=", "+=", "-=", ":="}},
	"SYMLINK":    {ops: []string{"==", "!=", "=", "+=", "-=", ":="}},
	"GROUP":      {ops: []string{"=", ":="}},
	"MODE":       {ops: []string{"=", ":="}},
	"OWNER":      {ops: []string{"=", ":="}},
	"OPTIONS":    {ops: []string{"+=", "="}},
	"GOTO":       {ops: []string{"="}},
	"LABEL":      {ops: []string{"="}},
}

var (
	udevKey   = regexp.MustCompile(`^([A-Z]+)(\{([A-Za-z0-9_.-]+)\})?`)
	udevOp    = regexp.MustCompile(`^(==|!=|\+=|-=|:=|=)`)
	udevMode  = regexp.MustCompile(`^0[0-7]{3}$`)
	udevGroup = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// parseUdevRules reads a rules file line by line, failing the test on any
// line that is not a comment or a comma-separated list of KEY=="value" /
// KEY="value" pairs with a key and operator udev(7) allows.
func parseUdevRules(t *testing.T, file string) []udevRule {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rules []udevRule
	labels := map[string]int{}
	type gotoAt struct {
		label string
		line  int
	}
	var gotos []gotoAt
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			t.Fatalf("%s:%d: continued line; keep one rule per line", file, n)
		}
		rule := udevRule{line: n}
		rest := line
		for rest != "" {
			m := udevKey.FindStringSubmatch(rest)
			if m == nil {
				t.Fatalf("%s:%d: expected a key at %q", file, n, rest)
			}
			p := udevPair{key: m[1], attr: m[3]}
			spec, known := udevKeyOps[p.key]
			if !known {
				t.Fatalf("%s:%d: key %s is not one these rules may use", file, n, p.key)
			}
			if spec.attr != (m[2] != "") {
				t.Fatalf("%s:%d: %s: {attribute} wrong for this key", file, n, m[0])
			}
			rest = strings.TrimLeft(rest[len(m[0]):], " \t")
			op := udevOp.FindString(rest)
			if op == "" || !slices.Contains(spec.ops, op) {
				t.Fatalf("%s:%d: %s: operator at %q not one of %v", file, n, m[0], rest, spec.ops)
			}
			p.op = op
			rest = strings.TrimLeft(rest[len(op):], " \t")
			if !strings.HasPrefix(rest, `"`) {
				t.Fatalf("%s:%d: %s%s: value not in double quotes", file, n, m[0], op)
			}
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				t.Fatalf("%s:%d: unterminated value", file, n)
			}
			p.value = rest[1 : 1+end]
			rest = strings.TrimLeft(rest[2+end:], " \t")
			if rest != "" {
				if !strings.HasPrefix(rest, ",") {
					t.Fatalf("%s:%d: expected ',' between pairs at %q", file, n, rest)
				}
				rest = strings.TrimLeft(rest[1:], " \t")
				if rest == "" {
					t.Fatalf("%s:%d: trailing ','", file, n)
				}
			}
			switch p.key {
			case "MODE":
				if !udevMode.MatchString(p.value) {
					t.Fatalf("%s:%d: MODE %q is not an octal mode", file, n, p.value)
				}
			case "GROUP":
				if !udevGroup.MatchString(p.value) {
					t.Fatalf("%s:%d: GROUP %q is not a group name", file, n, p.value)
				}
			case "LABEL":
				if _, dup := labels[p.value]; dup {
					t.Fatalf("%s:%d: LABEL %q twice", file, n, p.value)
				}
				labels[p.value] = n
			case "GOTO":
				gotos = append(gotos, gotoAt{p.value, n})
			}
			rule.pairs = append(rule.pairs, p)
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// udev only jumps forward.
	for _, g := range gotos {
		if at, ok := labels[g.label]; !ok || at <= g.line {
			t.Fatalf("%s:%d: GOTO %q has no LABEL after it", file, g.line, g.label)
		}
	}
	return rules
}

// udevParent is an ancestor device of the event's device: the USB device a
// tty hangs off, with its sysfs attributes.
type udevParent struct {
	subsystem string
	attrs     map[string]string
}

// udevEvent is what a rule sees: the event's device and its ancestors.
type udevEvent struct {
	action, subsystem string
	env               map[string]string
	parents           []udevParent
}

// udevOutcome is what the rules did to the device.
type udevOutcome struct {
	group, mode string
	symlinks    []string
}

// udevGlob matches like udev's fnmatch patterns with the | alternatives the
// rules might use; "" matches an unset value too.
func udevGlob(pattern, value string) bool {
	for alt := range strings.SplitSeq(pattern, "|") {
		if ok, _ := path.Match(alt, value); ok {
			return true
		}
	}
	return false
}

// udevEscapeReplace is string_escape=replace: characters outside udev's
// safe set become '_' (a link name keeps its '/').
func udevEscapeReplace(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', strings.ContainsRune("#+-.:=@_/", r):
			return r
		}
		return '_'
	}, s)
}

var udevEnvSubst = regexp.MustCompile(`\$env\{([A-Za-z0-9_]+)\}`)

// applyUdevRules runs the rules on one event as udev would for the keys
// these rules use: matches, ENV, GROUP, MODE, SYMLINK, string_escape, GOTO.
// It lets the test state what a plugged-in cable gets, not only that the
// file parses.
func applyUdevRules(t *testing.T, rules []udevRule, ev udevEvent) udevOutcome {
	t.Helper()
	var out udevOutcome
	env := map[string]string{}
	for k, v := range ev.env {
		env[k] = v
	}
	labelAt := map[string]int{}
	for i, r := range rules {
		for _, p := range r.pairs {
			if p.key == "LABEL" {
				labelAt[p.value] = i
			}
		}
	}
	escapeReplace := false
	for i := 0; i < len(rules); i++ {
		r := rules[i]
		// Parent keys of one rule must all match the same ancestor.
		parentOK := func(p udevPair, parent udevParent) bool {
			switch p.key {
			case "SUBSYSTEMS":
				return udevGlob(p.value, parent.subsystem)
			case "ATTRS":
				v, ok := parent.attrs[p.attr]
				return ok && udevGlob(p.value, v)
			}
			return true
		}
		var parentPairs []udevPair
		matched := true
		for _, p := range r.pairs {
			var ok bool
			switch p.key {
			case "ACTION":
				ok = udevGlob(p.value, ev.action)
			case "SUBSYSTEM":
				ok = udevGlob(p.value, ev.subsystem)
			case "ENV":
				if p.op != "==" && p.op != "!=" {
					continue
				}
				ok = udevGlob(p.value, env[p.attr])
			case "SUBSYSTEMS", "ATTRS":
				parentPairs = append(parentPairs, p)
				continue
			case "KERNEL", "KERNELS", "DRIVERS", "TAG", "SYMLINK":
				if p.op == "==" || p.op == "!=" {
					t.Fatalf("%s:%d: the test's evaluator does not model %s matches", udevRulesFile, r.line, p.key)
				}
				continue
			default:
				continue
			}
			if p.op == "!=" {
				ok = !ok
			}
			if !ok {
				matched = false
				break
			}
		}
		if matched && len(parentPairs) > 0 {
			found := false
			for _, parent := range ev.parents {
				all := true
				for _, p := range parentPairs {
					ok := parentOK(p, parent)
					if p.op == "!=" {
						ok = !ok
					}
					if !ok {
						all = false
						break
					}
				}
				if all {
					found = true
					break
				}
			}
			matched = found
		}
		if !matched {
			continue
		}
	apply:
		for _, p := range r.pairs {
			switch {
			case p.key == "ENV" && (p.op == "=" || p.op == ":="):
				env[p.attr] = p.value
			case p.key == "GROUP":
				out.group = p.value
			case p.key == "MODE":
				out.mode = p.value
			case p.key == "OPTIONS":
				if p.value == "string_escape=replace" {
					escapeReplace = true
				}
			case p.key == "SYMLINK" && p.op == "+=":
				link := udevEnvSubst.ReplaceAllStringFunc(p.value, func(m string) string {
					return env[udevEnvSubst.FindStringSubmatch(m)[1]]
				})
				if escapeReplace {
					link = udevEscapeReplace(link)
				}
				// Without escaping, a space separates several links.
				out.symlinks = append(out.symlinks, strings.Fields(link)...)
			case p.key == "GOTO":
				i = labelAt[p.value]
				break apply
			}
		}
	}
	return out
}

// usbIDs maps each USB id of the registry to the drivers that name it.
func usbIDs(t *testing.T) map[string][]string {
	t.Helper()
	ids := map[string][]string{}
	for _, name := range drivers.Names() {
		d, _ := drivers.Lookup(name)
		for _, id := range d.USBIDs {
			ids[id] = append(ids[id], name)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no driver in the registry names a USB id: is drivers/all imported?")
	}
	return ids
}

// TestUdevRulesCoverEveryRegistryUSBID plugs in, on paper, a cable with
// each USB id the drivers know, and checks the permissions and names it
// gets; then cables the rules must leave alone.
func TestUdevRulesCoverEveryRegistryUSBID(t *testing.T) {
	rules := parseUdevRules(t, udevRulesFile)
	raw, err := os.ReadFile(udevRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	const pathTag = "pci-0000_00_14_0-usb-0_2_1_0"
	usbTTY := func(vid, pid string, env map[string]string) udevEvent {
		return udevEvent{
			action:    "add",
			subsystem: "tty",
			env:       env,
			parents: []udevParent{
				{subsystem: "usb-serial", attrs: map[string]string{"port_number": "0"}},
				{subsystem: "usb", attrs: map[string]string{"bInterfaceNumber": "00"}},
				{subsystem: "usb", attrs: map[string]string{"idVendor": vid, "idProduct": pid, "serial": "A5069RR4"}},
			},
		}
	}
	for id, names := range usbIDs(t) {
		vid, pid, ok := strings.Cut(id, ":")
		if !ok || len(vid) != 4 || len(pid) != 4 {
			t.Errorf("registry USB id %q (drivers %v) is not vvvv:pppp", id, names)
			continue
		}
		t.Run(id, func(t *testing.T) {
			if !bytes.Contains(raw, fmt.Appendf(nil, `ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s"`, vid, pid)) {
				t.Errorf("%s does not name USB id %s (drivers %v)", udevRulesFile, id, names)
			}
			out := applyUdevRules(t, rules, usbTTY(vid, pid, map[string]string{
				"ID_SERIAL_SHORT": "A5069RR4", "ID_PATH_TAG": pathTag,
			}))
			if out.group != "dialout" || out.mode != "0660" {
				t.Errorf("cable %s: GROUP=%q MODE=%q, want dialout 0660", id, out.group, out.mode)
			}
			if len(out.symlinks) != 2 {
				t.Fatalf("cable %s: links %q, want one by serial number and one by port", id, out.symlinks)
			}
			name, ok := strings.CutPrefix(out.symlinks[0], "vigil/")
			name, hasSerial := strings.CutSuffix(name, "-A5069RR4")
			if !ok || !hasSerial || !slices.Contains(names, name) {
				t.Errorf("cable %s: link %q, want vigil/<one of %v>-A5069RR4", id, out.symlinks[0], names)
			}
			if want := "vigil/by-port/" + name + "-" + pathTag; out.symlinks[1] != want {
				t.Errorf("cable %s: link %q, want %q", id, out.symlinks[1], want)
			}

			// A serial number with a space names one link, not two.
			out = applyUdevRules(t, rules, usbTTY(vid, pid, map[string]string{"ID_SERIAL_SHORT": "AB 12"}))
			if want := []string{"vigil/" + name + "-AB_12"}; !slices.Equal(out.symlinks, want) {
				t.Errorf("serial %q: links %q, want %q", "AB 12", out.symlinks, want)
			}
			// No serial number: only the link by port.
			out = applyUdevRules(t, rules, usbTTY(vid, pid, map[string]string{"ID_PATH_TAG": pathTag}))
			if want := []string{"vigil/by-port/" + name + "-" + pathTag}; !slices.Equal(out.symlinks, want) {
				t.Errorf("no serial number: links %q, want %q", out.symlinks, want)
			}
			// Unplugging is udev's business: no rule of ours runs.
			ev := usbTTY(vid, pid, map[string]string{"ID_SERIAL_SHORT": "A5069RR4"})
			ev.action = "remove"
			if out := applyUdevRules(t, rules, ev); out.group != "" || len(out.symlinks) != 0 {
				t.Errorf("remove event changed %+v", out)
			}
			// The USB device itself (not its tty) is left alone.
			ev = usbTTY(vid, pid, nil)
			ev.subsystem = "usb"
			if out := applyUdevRules(t, rules, ev); out.group != "" || len(out.symlinks) != 0 {
				t.Errorf("the usb device node got %+v", out)
			}
		})
	}

	// A cable no driver names (FTDI's generic id, unless a driver claims
	// it one day), and an on-board port, get nothing from us.
	unknown := []udevEvent{
		{action: "add", subsystem: "tty", parents: []udevParent{{subsystem: "pnp", attrs: map[string]string{"id": "PNP0501"}}}},
	}
	if _, known := usbIDs(t)["0403:6001"]; !known {
		unknown = append(unknown, usbTTY("0403", "6001", map[string]string{"ID_SERIAL_SHORT": "FT1", "ID_PATH_TAG": pathTag}))
	}
	for _, ev := range unknown {
		if out := applyUdevRules(t, rules, ev); out.group != "" || out.mode != "" || len(out.symlinks) != 0 {
			t.Errorf("a port no driver names got %+v", out)
		}
	}
}

// TestUdevadmVerify runs `udevadm verify` (systemd 253 and later) on the
// rules. Older udevadm (Debian 12 has 252) has no verify: the parser above
// is then the only syntax check, and the test says so in its log.
func TestUdevadmVerify(t *testing.T) {
	udevadm, err := exec.LookPath("udevadm")
	if err != nil {
		t.Logf("udevadm not installed: rules checked by this package's parser only")
		return
	}
	if err := exec.Command(udevadm, "verify", "--help").Run(); err != nil {
		version, _ := exec.Command(udevadm, "--version").Output()
		t.Logf("udevadm %s has no verify command (systemd 253+): rules checked by this package's parser only", strings.TrimSpace(string(version)))
		return
	}
	run(t, udevadm, "verify", "--resolve-names=never", udevRulesFile)
}

// ---- the .deb --------------------------------------------------------------

// packageScript runs scripts/package.sh with args and extra environment.
func packageScript(t *testing.T, ctx context.Context, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join("..", "scripts", "package.sh"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/package.sh %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestPackageVersions checks how scripts/package.sh turns `git describe`
// output into Debian versions: valid (dpkg --validate-version) and sorting
// as the releases do.
func TestPackageVersions(t *testing.T) {
	dpkg := tool(t, "dpkg", "dpkg")
	ctx := t.Context()
	cases := []struct{ describe, deb string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"abc1234", "0.0.0~git.abc1234"},
		{"abc1234-dirty", "0.0.0~git.abc1234+dirty"},
		{"dev", "0.0.0~git.dev"},
		{"v2.0 beta/1", "2.0.beta.1"},
	}
	for _, c := range cases {
		out := strings.TrimSpace(packageScript(t, ctx, []string{"VIGIL_VERSION=" + c.describe}, "--version"))
		if want := c.describe + " " + c.deb; out != want {
			t.Errorf("VIGIL_VERSION=%q: %q, want %q", c.describe, out, want)
		}
		run(t, dpkg, "--validate-version", c.deb)
	}
	// Each one sorts after the one before: an upgrade is an upgrade.
	order := []string{"0.0.0~git.abc1234", "1.2.3~rc.1", "1.2.3", "1.2.3+4.gabc1234", "1.2.3+4.gabc1234.dirty"}
	for i := 1; i < len(order); i++ {
		run(t, dpkg, "--compare-versions", order[i-1], "lt", order[i])
	}
}

// debEntry is one line of dpkg-deb --contents.
type debEntry struct {
	mode, owner string
}

// TestDebPackage builds the .deb with scripts/package.sh and checks what it
// installs, with which mode and owner, its conffiles and maintainer
// scripts, and that the binary inside runs. The build downloads and
// compiles nfpm the first time and compiles vigil without the race
// detector: about 4 minutes on a cold 2-core machine, 10 s warm. -short
// skips it outside CI; in CI it always runs.
func TestDebPackage(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("builds vigil and nfpm (minutes when cold); runs without -short and always in CI")
	}
	dpkgDeb := tool(t, "dpkg-deb", "dpkg")
	tool(t, "go", "golang")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	const version = "v9.8.7-rc.1"
	const debVersion = "9.8.7~rc.1"
	outDir := t.TempDir()
	start := time.Now()
	packageScript(t, ctx, []string{"VIGIL_VERSION=" + version, "VIGIL_MAINTAINER=Vigil test <test@example.org>"}, outDir)
	t.Logf("scripts/package.sh took %s", time.Since(start).Round(time.Second))
	debs, err := filepath.Glob(filepath.Join(outDir, "*.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("package.sh made %v (err %v), want one .deb", debs, err)
	}
	deb := debs[0]
	if !strings.HasPrefix(filepath.Base(deb), "vigil_"+debVersion+"_") {
		t.Errorf("package file %s, want vigil_%s_<arch>.deb", filepath.Base(deb), debVersion)
	}

	info := run(t, dpkgDeb, "--info", deb)
	for _, want := range []string{
		"Package: vigil",
		"Version: " + debVersion,
		"Depends: adduser",
		"Recommends: mosquitto, prometheus",
		"Maintainer: Vigil test <test@example.org>",
	} {
		if !strings.Contains(info, "\n "+want+"\n") {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+` + script + `\s+#!/bin/sh$`).MatchString(info) {
			t.Errorf("dpkg-deb --info: %s missing or not an executable /bin/sh script:\n%s", script, info)
		}
	}
	if strings.Contains(info, " preinst ") {
		t.Errorf("unexpected preinst:\n%s", info)
	}

	// Every file, its mode and owner. dpkg-deb shows the owner names nfpm
	// wrote; dpkg maps them to ids at unpack, and group vigil exists only
	// after postinst, which therefore also sets a dpkg-statoverride.
	contents := run(t, dpkgDeb, "--contents", deb)
	files := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(contents), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		name := strings.TrimPrefix(f[5], ".")
		if strings.HasSuffix(name, "/") && f[0][0] == 'd' {
			name = strings.TrimSuffix(name, "/")
			if name != "/etc/vigil" {
				continue // the usual root:root 0755 parents
			}
		}
		files[name] = debEntry{mode: f[0], owner: f[1]}
	}
	want := map[string]debEntry{
		"/usr/bin/vigil":                     {"-rwxr-xr-x", "root/root"},
		"/lib/systemd/system/vigil.service":  {"-rw-r--r--", "root/root"},
		"/lib/udev/rules.d/99-vigil.rules":   {"-rw-r--r--", "root/root"},
		"/usr/lib/modules-load.d/vigil.conf": {"-rw-r--r--", "root/root"},
		"/etc/vigil":                         {"drwxr-x---", "root/vigil"},
		"/etc/vigil/vigil.yaml":              {"-rw-r-----", "root/vigil"},
		"/usr/share/doc/vigil/README.md":     {"-rw-r--r--", "root/root"},
		"/usr/share/doc/vigil/copyright":     {"-rw-r--r--", "root/root"},
	}
	for name, w := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("%s not in the package", name)
			continue
		}
		if got != w {
			t.Errorf("%s: %s %s, want %s %s", name, got.mode, got.owner, w.mode, w.owner)
		}
	}
	for name := range files {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected file in the package: %s", name)
		}
	}

	// The control files: conffiles and the maintainer scripts, byte for
	// byte the ones in configs/packaging.
	control := t.TempDir()
	run(t, dpkgDeb, "--control", deb, control)
	conffiles, err := os.ReadFile(filepath.Join(control, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(conffiles)); !slices.Equal(got, []string{"/etc/vigil/vigil.yaml"}) {
		t.Errorf("conffiles %q, want only /etc/vigil/vigil.yaml", got)
	}
	for script, source := range map[string]string{
		"postinst": "postinstall.sh",
		"prerm":    "preremove.sh",
		"postrm":   "postremove.sh",
	} {
		sameFile(t, filepath.Join(control, script), filepath.Join(packagingDir, source))
	}

	// The files themselves, and the binary.
	root := t.TempDir()
	run(t, dpkgDeb, "-x", deb, root)
	sameFile(t, filepath.Join(root, "lib/systemd/system/vigil.service"), unitFile)
	sameFile(t, filepath.Join(root, "lib/udev/rules.d/99-vigil.rules"), udevRulesFile)
	sameFile(t, filepath.Join(root, "etc/vigil/vigil.yaml"), "vigil.yaml")
	sameFile(t, filepath.Join(root, "usr/share/doc/vigil/README.md"), "../README.md")

	vigil := filepath.Join(root, "usr/bin/vigil")
	out := run(t, vigil, "version")
	if !strings.HasPrefix(out, "vigil "+version+" (") {
		t.Errorf("vigil version printed %q, want it to start with %q", out, "vigil "+version+" (")
	}
	// The shipped example config passes the shipped binary's check.
	run(t, vigil, "config", "check", filepath.Join(root, "etc/vigil/vigil.yaml"))

	copyright, err := os.ReadFile(filepath.Join(root, "usr/share/doc/vigil/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	for _, module := range []string{"go.bug.st/serial", "github.com/spf13/cobra", "github.com/eclipse/paho.mqtt.golang"} {
		if !bytes.Contains(copyright, []byte("\n"+module+" v")) {
			t.Errorf("copyright does not name the linked module %s", module)
		}
	}
	if bytes.Contains(copyright, []byte("no license file found")) {
		t.Errorf("copyright lacks the license of a linked module:\n%s", copyright)
	}
}

// sameFile fails the test when two files differ.
func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Error(err)
		return
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Error(err)
		return
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s in the package differs from %s", got, want)
	}
}
