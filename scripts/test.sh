#!/usr/bin/env bash
# Runs Vigil's whole test suite on a Debian machine with Go, installing the
# Debian packages the tests use when they are missing (needs root or sudo):
#   mosquitto, mosquitto-clients  real MQTT broker for the end-to-end tests
#   socat                         a separate-process null-modem cable
#   prometheus                    promtool, to lint the exposition
#   prometheus-alertmanager       a real Alertmanager for the alarm channel
#   chromium                      headless browser for the acknowledge page and the session report
#   systemd                       systemd-analyze, to verify the unit file
# Then: go vet, go test -race on every package, and a short run of every fuzz
# target. Environment:
#   FUZZTIME   how much each fuzz target runs (default 50000x, i.e. 50,000
#              inputs; 0 skips fuzzing). A count, not a duration: Go 1.26's
#              fuzz coordinator can fail a duration run with a spurious
#              "context deadline exceeded" at the deadline on a busy machine
#              (golang/go#75804, fixed in Go 1.27).
#   SKIP_APT=1 do not install packages
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || need_pkgs+=(socat)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || need_pkgs+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need_pkgs+=(dpkg)

if [ "${#need_pkgs[@]}" -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "==> installing ${need_pkgs[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
	# The Debian packages start system services; the tests start their own
	# instances on free ports and need none of these.
	for svc in mosquitto prometheus prometheus-alertmanager; do
		$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
	done
fi

echo "==> go vet ./..."
go vet ./...

echo "==> go test -race ./..."
go test -race -count=1 -timeout 15m ./...

fuzztime="${FUZZTIME:-50000x}"
if [ "$fuzztime" != 0 ]; then
	# Every Fuzz target runs briefly: the seed corpus already ran above as
	# ordinary tests; this explores beyond it.
	grep -rl --include='*_test.go' '^func Fuzz' . | while read -r file; do
		pkg="./$(dirname "${file#./}")"
		for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
			echo "==> fuzz $pkg $target for $fuzztime"
			go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
		done
	done
fi
echo "==> all tests passed"
