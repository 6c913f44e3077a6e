// Package filemode checks that a configuration or secret file is private:
// the agent's config names the MQTT password file, the web config with its
// password hashes, TLS keys and notification tokens, and a copy readable by
// every account on the mini-PC gives any of them the clinic's broker, its
// pager and its HTTP API.
//
// The expected layout, which the .deb installs: owned by root, group vigil
// (the service's group), mode 0640, in a directory only root can write.
// The group may read (the agent runs as user vigil); nobody else may do
// anything with the file.
package filemode

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CheckPrivate reports whether path is private. When it is not, or cannot
// be checked, ok is false and warning says what is wrong and how to fix it,
// in one line fit for the log at start (it names the path and the mode,
// never the content). The checks:
//   - others (neither the owner nor the group) have any permission on the
//     file: mode & 0o007 != 0;
//   - the directory holding it is writable by others: anyone could replace
//     the file, even one with a private mode.
//
// It follows symbolic links: what matters is the file the agent reads.
func CheckPrivate(path string) (warning string, ok bool) {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("cannot check the permissions of %s: %v", path, err), false
	}
	var problems, fixes []string
	mode := info.Mode().Perm()
	if others := mode & 0o007; others != 0 {
		problems = append(problems, fmt.Sprintf("%s by others (mode %04o)", permissionWords(others), mode))
		fixes = append(fixes, fmt.Sprintf("chmod 0640 %s && chown root:vigil %s", path, path))
	}
	dir := filepath.Dir(path)
	if dirInfo, err := os.Stat(dir); err != nil {
		problems = append(problems, fmt.Sprintf("its directory %s cannot be checked (%v)", dir, err))
	} else if dirMode := dirInfo.Mode(); dirMode.Perm()&0o002 != 0 {
		what := "its directory %s is writable by others (mode %04o), so anyone can replace it"
		if dirMode&fs.ModeSticky != 0 {
			// The sticky bit (/tmp) stops others deleting this file, not
			// planting a file there before it exists.
			what = "its directory %s is writable by others (mode %04o, sticky), so anyone can put a file there"
		}
		problems = append(problems, fmt.Sprintf(what, dir, dirMode.Perm()))
		fixes = append(fixes, "move it to a directory only root can write, such as /etc/vigil (chmod 0750 /etc/vigil && chown root:vigil /etc/vigil)")
	}
	if len(problems) == 0 {
		return "", true
	}
	return fmt.Sprintf("%s is %s; fix: %s", path, strings.Join(problems, ", and "), strings.Join(fixes, "; ")), false
}

// permissionWords names the permission bits of one class (0-7).
func permissionWords(bits fs.FileMode) string {
	var words []string
	if bits&0o4 != 0 {
		words = append(words, "readable")
	}
	if bits&0o2 != 0 {
		words = append(words, "writable")
	}
	if bits&0o1 != 0 {
		words = append(words, "executable")
	}
	return strings.Join(words, " and ")
}
