package filemode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// privateDir is a directory only its owner can write, whatever the umask.
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

// file creates dir/name with exactly mode (chmod after create: the umask
// would otherwise clear bits).
func file(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("password: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckPrivateModes(t *testing.T) {
	dir := privateDir(t)
	cases := []struct {
		mode  os.FileMode
		ok    bool
		words []string // in the warning
	}{
		{0o600, true, nil},
		{0o640, true, nil},
		{0o660, true, nil}, // the group is the service's own
		{0o400, true, nil},
		{0o644, false, []string{"readable by others", "mode 0644", "chmod 0640", "chown root:vigil"}},
		{0o604, false, []string{"readable by others", "mode 0604"}},
		{0o642, false, []string{"writable by others", "mode 0642"}},
		{0o666, false, []string{"readable and writable by others", "mode 0666"}},
		{0o641, false, []string{"executable by others", "mode 0641"}},
		{0o777, false, []string{"readable and writable and executable by others", "mode 0777"}},
	}
	for _, tc := range cases {
		path := file(t, dir, "vigil-"+tc.mode.String()+".yaml", tc.mode)
		warning, ok := CheckPrivate(path)
		if ok != tc.ok {
			t.Errorf("mode %04o: ok %v, want %v (%q)", tc.mode, ok, tc.ok, warning)
			continue
		}
		if ok {
			if warning != "" {
				t.Errorf("mode %04o: ok with warning %q", tc.mode, warning)
			}
			continue
		}
		if !strings.HasPrefix(warning, path+" is ") {
			t.Errorf("mode %04o: warning does not start with the path: %q", tc.mode, warning)
		}
		for _, w := range tc.words {
			if !strings.Contains(warning, w) {
				t.Errorf("mode %04o: warning lacks %q: %q", tc.mode, w, warning)
			}
		}
		if strings.Contains(warning, "s3cret") || strings.Contains(warning, "directory") {
			t.Errorf("mode %04o: warning %q", tc.mode, warning)
		}
	}
}

func TestCheckPrivateDirectory(t *testing.T) {
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	path := file(t, shared, "mqtt-password", 0o640)
	warning, ok := CheckPrivate(path)
	if ok || !strings.Contains(warning, "its directory "+shared+" is writable by others (mode 0777), so anyone can replace it") ||
		!strings.Contains(warning, "/etc/vigil") {
		t.Fatalf("private file in a world-writable directory: %v %q", ok, warning)
	}

	sticky := t.TempDir()
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path = file(t, sticky, "token", 0o644)
	warning, ok = CheckPrivate(path)
	if ok || !strings.Contains(warning, "readable by others") || !strings.Contains(warning, "sticky") ||
		!strings.Contains(warning, ", and its directory") {
		t.Fatalf("readable file in a sticky world-writable directory: %v %q", ok, warning)
	}

	// Group-writable directory: root:vigil 0770 is the admin's choice.
	group := t.TempDir()
	if err := os.Chmod(group, 0o770); err != nil {
		t.Fatal(err)
	}
	if warning, ok := CheckPrivate(file(t, group, "key", 0o640)); !ok {
		t.Fatalf("group-writable directory: %q", warning)
	}
}

func TestCheckPrivateFollowsLinks(t *testing.T) {
	dir := privateDir(t)
	target := file(t, dir, "real.yaml", 0o644)
	link := filepath.Join(dir, "vigil.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if warning, ok := CheckPrivate(link); ok || !strings.Contains(warning, "readable by others") {
		t.Fatalf("link to a readable file: %v %q", ok, warning)
	}
	if err := os.Chmod(target, 0o640); err != nil {
		t.Fatal(err)
	}
	if warning, ok := CheckPrivate(link); !ok {
		t.Fatalf("link to a private file: %q", warning)
	}
}

func TestCheckPrivateMissing(t *testing.T) {
	path := filepath.Join(privateDir(t), "absent.yaml")
	warning, ok := CheckPrivate(path)
	if ok || !strings.Contains(warning, "cannot check the permissions of "+path) {
		t.Fatalf("missing file: %v %q", ok, warning)
	}
}
