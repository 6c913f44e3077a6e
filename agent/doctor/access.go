package doctor

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Permission bits as access(2) and the "other" triplet of a mode spell them.
const (
	permRead  = 4
	permWrite = 2
	permExec  = 1
)

// access is the answer to "may the service user do this to that file?".
type access struct {
	ok bool
	// how says why it may ("as its owner", "through group dialout") or,
	// when it may not, who owns the file and its mode.
	how string
}

// serviceAccess says whether the service user of o may use path with the
// permission bits need (permRead|permWrite for a device or the database,
// permWrite|permExec to create files in a directory).
//
// When vigil doctor runs as the service user itself, the kernel answers
// (access(2)). Otherwise (typically as root, who may do anything) the
// file's owner, group and mode are compared with the service user's
// identity: its uid, its groups from /etc/group, and the groups the
// systemd unit adds (SupplementaryGroups=dialout), which the user need not
// be a member of. A service user that does not exist yet (the .deb creates
// it) is given only those supplementary groups.
func serviceAccess(path string, need uint32, o Options) (access, error) {
	svc, lookupErr := user.Lookup(o.ServiceUser)
	if svc != nil && svc.Uid == strconv.Itoa(os.Geteuid()) && os.Geteuid() == os.Getuid() {
		if err := unix.Access(path, need); err != nil {
			if err == unix.EACCES || err == unix.EPERM || err == unix.EROFS {
				return access{how: fmt.Sprintf("%s (%s)", owner(path), err)}, nil
			}
			return access{}, err
		}
		return access{ok: true, how: "as " + o.ServiceUser + " (checked by the kernel)"}, nil
	}

	st, err := os.Stat(path)
	if err != nil {
		return access{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return access{}, fmt.Errorf("no owner information for %s", path)
	}
	mode := uint32(st.Mode().Perm())
	if svc != nil && svc.Uid == "0" {
		return access{ok: true, how: "as root"}, nil
	}
	if svc != nil && svc.Uid == strconv.FormatUint(uint64(sys.Uid), 10) && mode>>6&need == need {
		return access{ok: true, how: "as its owner " + o.ServiceUser}, nil
	}
	if mode>>3&need == need {
		gid := strconv.FormatUint(uint64(sys.Gid), 10)
		var gids []string
		if svc != nil {
			gids, _ = svc.GroupIds()
		}
		for _, name := range o.SupplementaryGroups {
			if g, err := user.LookupGroup(name); err == nil {
				gids = append(gids, g.Gid)
			}
		}
		if slices.Contains(gids, gid) {
			return access{ok: true, how: "through group " + groupName(gid)}, nil
		}
	}
	if mode&need == need {
		return access{ok: true, how: fmt.Sprintf("its mode %04o lets every user", mode)}, nil
	}
	how := owner(path)
	if lookupErr != nil {
		how += fmt.Sprintf("; user %s does not exist on this machine", o.ServiceUser)
	}
	return access{how: how}, nil
}

// owner describes a file's owner, group and mode: "root:tty, mode 0620".
func owner(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "cannot stat: " + err.Error()
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("mode %04o", st.Mode().Perm())
	}
	uid := strconv.FormatUint(uint64(sys.Uid), 10)
	name := uid
	if u, err := user.LookupId(uid); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("owned by %s:%s, mode %04o", name, groupName(strconv.FormatUint(uint64(sys.Gid), 10)), st.Mode().Perm())
}

func groupName(gid string) string {
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}
