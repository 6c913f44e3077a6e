package notify

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSecretFileTrimsWhitespace(t *testing.T) {
	for content, want := range map[string]string{
		"tk_abc":                                "tk_abc",
		"tk_abc\n":                              "tk_abc",
		"\t tk_abc \r\n":                        "tk_abc",
		"has inner space\n":                     "has inner space",
		strings.Repeat("a", MaxSecretFileBytes): strings.Repeat("a", MaxSecretFileBytes),
	} {
		got, err := ReadSecretFile(writeSecret(t, "token", content))
		if err != nil || got != want {
			t.Errorf("ReadSecretFile(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
}

func TestReadPasswordFileKeepsSpacesDropsTheLineEnd(t *testing.T) {
	for content, want := range map[string]string{
		"hunter2":         "hunter2",
		"hunter2\n":       "hunter2",
		"hunter2\r\n":     "hunter2",
		" pass word \n":   " pass word ",
		"\tleading tab\n": "\tleading tab",
		"two\nlines\n":    "two\nlines", // the caller judges the content
	} {
		got, err := ReadPasswordFile(writeSecret(t, "password", content))
		if err != nil || got != want {
			t.Errorf("ReadPasswordFile(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
}

func TestSecretFileErrorsNameTheFileNeverTheContent(t *testing.T) {
	const private = "PRIVATE-secret-content"
	dir := t.TempDir()
	huge := writeSecret(t, "huge", private+strings.Repeat("s", MaxSecretFileBytes))
	missing := filepath.Join(dir, "absent")
	unreadable := writeSecret(t, "unreadable", private)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		read    func(string) (string, error)
		path    string
		want    error
		message string
	}{
		{"missing token", ReadSecretFile, missing, fs.ErrNotExist, "cannot read " + missing + ": no such file or directory"},
		{"missing password", ReadPasswordFile, missing, fs.ErrNotExist, "cannot read " + missing + ": no such file or directory"},
		{"directory", ReadSecretFile, dir, ErrSecretNotRegular, dir + " is not a regular file"},
		{"directory password", ReadPasswordFile, dir, ErrSecretNotRegular, dir + " is not a regular file"},
		{"huge", ReadSecretFile, huge, ErrSecretTooLarge, huge + " is larger than 4096 bytes; is it the right file?"},
		{"huge password", ReadPasswordFile, huge, ErrSecretTooLarge, huge + " is larger than 4096 bytes"},
		{"whitespace only", ReadSecretFile, writeSecret(t, "blank", " \t\r\n"), ErrSecretEmpty, "holds no secret"},
		{"empty", ReadSecretFile, writeSecret(t, "empty", ""), ErrSecretEmpty, "holds no secret"},
		{"empty password", ReadPasswordFile, writeSecret(t, "nopw", "\r\n"), ErrSecretEmpty, "holds no secret"},
	}
	if os.Geteuid() != 0 { // root reads a mode-0 file anyway
		cases = append(cases, struct {
			name    string
			read    func(string) (string, error)
			path    string
			want    error
			message string
		}{"unreadable", ReadSecretFile, unreadable, fs.ErrPermission, "cannot read " + unreadable + ": permission denied"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.read(tc.path)
			if got != "" {
				t.Errorf("returned %q along with the error", got)
			}
			var se *SecretFileError
			if !errors.As(err, &se) || se.Path != tc.path {
				t.Fatalf("error %v, want a *SecretFileError for %s", err, tc.path)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v does not match %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q, want it to contain %q", err, tc.message)
			}
			if strings.Count(err.Error(), tc.path) != 1 {
				t.Errorf("error %q should name the file exactly once", err)
			}
			if strings.Contains(err.Error(), private) || strings.Contains(err.Error(), "ssss") {
				t.Errorf("error %q shows the file content", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	cases := []struct {
		in      string
		secrets []string
		want    string
	}{
		{"bad auth Bearer tk_abc", []string{"tk_abc"}, "bad auth Bearer [redacted]"},
		{"tk_abc and tk_abc again", []string{"tk_abc"}, "[redacted] and [redacted] again"},
		{"user pw, basic dXNlcjpwdw==", []string{"pw", "dXNlcjpwdw=="}, "user [redacted], basic [redacted]"},
		{"nothing secret here", []string{"tk_abc"}, "nothing secret here"},
		{"empty secrets change nothing", []string{"", ""}, "empty secrets change nothing"},
		{"no secrets at all", nil, "no secrets at all"},
	}
	for _, tc := range cases {
		if got := Redact(tc.in, tc.secrets...); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.in, tc.secrets, got, tc.want)
		}
	}
}
