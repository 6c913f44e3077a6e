#!/bin/sh
# postinst of the vigil .deb (nfpm writes no systemd or user handling:
# ecosystem.md, "nfpm"). Arguments as deb-postinst(5): "configure
# <last configured version>" (empty on a first install) or abort-*.
set -e

case "$1" in
configure) ;;
*) exit 0 ;;
esac
previous="$2"

# The service runs as the system user vigil (vigil.service User=), never
# root. Its home is the unit's StateDirectory, which systemd creates with
# the right owner at start, hence --no-create-home.
if ! getent passwd vigil >/dev/null; then
	adduser --system --group --home /var/lib/vigil --no-create-home vigil
fi
# Serial ports belong to dialout (configs/udev/99-vigil.rules). The unit
# adds the group itself (SupplementaryGroups=); membership also lets an
# administrator run `sudo -u vigil vigil devices` or `vigil doctor` as the
# service would.
if ! id -nG vigil | tr ' ' '\n' | grep -qx dialout; then
	adduser vigil dialout
fi

# /etc/vigil and its config belong to root:vigil, 0750 and 0640: the agent
# reads them, other users cannot (secrets live beside the config). dpkg
# unpacked them as root:root on a first install, before the group existed;
# a statoverride fixes that now and keeps it through upgrades, and an
# administrator can change it with dpkg-statoverride.
if ! dpkg-statoverride --list /etc/vigil >/dev/null; then
	dpkg-statoverride --update --add root vigil 0750 /etc/vigil
fi
if ! dpkg-statoverride --list /etc/vigil/vigil.yaml >/dev/null; then
	dpkg-statoverride --update --add root vigil 0640 /etc/vigil/vigil.yaml
fi

# New udev rules apply to ports plugged in from now on; a change event
# applies them to the ports already there.
if [ -S /run/udev/control ]; then
	udevadm control --reload-rules || true
	udevadm trigger --subsystem-match=tty --action=change || true
fi

# Only with systemd running (not in a chroot or an image build): the
# package cannot start or enable anything otherwise.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	# Load the serial drivers now as well as at every boot
	# (modules-load.d/vigil.conf), so a start before the next boot has
	# the device groups its DeviceAllow= names. Fails harmlessly in a
	# container.
	systemctl restart systemd-modules-load.service || true
	if [ -z "$previous" ]; then
		# First install: enabled for the next boot, not started. The
		# example config names devices this room does not have; the
		# site edits it first.
		systemctl enable vigil.service
		echo "vigil: edit /etc/vigil/vigil.yaml, check it with 'vigil config check /etc/vigil/vigil.yaml', then 'systemctl start vigil'."
	else
		# Upgrade: the running agent (prerm left it running, so the gap
		# in monitoring is one restart) moves to the new binary. An agent
		# the administrator stopped stays stopped, and one they disabled
		# stays disabled.
		systemctl try-restart vigil.service || true
	fi
fi
exit 0
