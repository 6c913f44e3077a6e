#!/bin/sh
# postrm of the vigil .deb. Arguments as deb-postrm(5): remove, purge,
# upgrade, failed-upgrade, abort-install, abort-upgrade, disappear.
set -e

case "$1" in
remove)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	if [ -S /run/udev/control ]; then
		udevadm control --reload-rules || true
	fi
	;;
purge)
	# Purge removes what the package made at run time; remove keeps it.
	# The store and the audit log (acknowledgements, who and when) are
	# clinical records: only an explicit purge deletes them.
	rm -rf /var/lib/vigil
	for path in /etc/vigil/vigil.yaml /etc/vigil; do
		if dpkg-statoverride --list "$path" >/dev/null; then
			dpkg-statoverride --remove "$path"
		fi
	done
	# dpkg removed the conffile; secret files an administrator put beside
	# it stay, and so does the directory then.
	if [ -d /etc/vigil ]; then
		rmdir --ignore-fail-on-non-empty /etc/vigil
	fi
	# prerm could not disable the unit when systemd was not running.
	rm -f /etc/systemd/system/multi-user.target.wants/vigil.service
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	# The vigil user and group stay (Debian practice): deleting them
	# would let a later account reuse the id and own any file of theirs
	# left behind, such as those secret files.
	;;
esac
exit 0
