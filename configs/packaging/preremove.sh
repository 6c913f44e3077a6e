#!/bin/sh
# prerm of the vigil .deb. Arguments as deb-prerm(5): remove, upgrade
# <new version>, deconfigure, failed-upgrade.
set -e

case "$1" in
remove|deconfigure)
	# The binary is about to go: stop the agent cleanly (it publishes its
	# offline status) and take it out of the boot. Monitoring in this
	# room stops here.
	if [ -d /run/systemd/system ]; then
		systemctl stop vigil.service || true
		systemctl disable vigil.service || true
	fi
	;;
upgrade|failed-upgrade)
	# Left running: postinst restarts it on the new binary, so the gap
	# in monitoring is one restart, not the whole unpack.
	;;
esac
exit 0
