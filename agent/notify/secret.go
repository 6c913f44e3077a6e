package notify

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// MaxSecretFileBytes bounds a secret file (token, key, password): a larger
// file is surely not a secret but a key, certificate or log picked by
// mistake, and is refused rather than read whole.
const MaxSecretFileBytes = 4096

// The reasons a SecretFileError gives besides the file system's own.
var (
	ErrSecretNotRegular = errors.New("is not a regular file")
	ErrSecretTooLarge   = fmt.Errorf("is larger than %d bytes; is it the right file?", MaxSecretFileBytes)
	ErrSecretEmpty      = errors.New("holds no secret")
)

// SecretFileError is a secret file that cannot be used. Its message names
// the file and the reason, never the content; channels wrap it in their
// ConfigError, which names the config key.
type SecretFileError struct {
	Path string
	// Err is ErrSecretNotRegular, ErrSecretTooLarge, ErrSecretEmpty, or the
	// file system's cause without the path it repeats ("permission denied").
	Err error
}

func (e *SecretFileError) Error() string {
	switch e.Err {
	case ErrSecretNotRegular, ErrSecretTooLarge, ErrSecretEmpty:
		return e.Path + " " + e.Err.Error()
	}
	return fmt.Sprintf("cannot read %s: %v", e.Path, e.Err)
}

func (e *SecretFileError) Unwrap() error { return e.Err }

// ReadSecretFile reads a token or key: whitespace around it, the trailing
// newline included, is not part of it. A file that holds only whitespace
// is ErrSecretEmpty. Read once when a channel is built, so a missing or
// unreadable file fails at start rather than during an alarm.
func ReadSecretFile(path string) (string, error) {
	raw, err := readBounded(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", &SecretFileError{Path: path, Err: ErrSecretEmpty}
	}
	return s, nil
}

// ReadPasswordFile reads a password or user name, which may begin or end
// with a space: only the trailing line end ("\n" or "\r\n") is dropped. An
// empty password is ErrSecretEmpty.
func ReadPasswordFile(path string) (string, error) {
	raw, err := readBounded(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(raw, "\r\n")
	if s == "" {
		return "", &SecretFileError{Path: path, Err: ErrSecretEmpty}
	}
	return s, nil
}

// readBounded reads a regular file of at most MaxSecretFileBytes.
func readBounded(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &SecretFileError{Path: path, Err: withoutPath(err)}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", &SecretFileError{Path: path, Err: withoutPath(err)}
	}
	if !info.Mode().IsRegular() {
		return "", &SecretFileError{Path: path, Err: ErrSecretNotRegular}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSecretFileBytes+1))
	if err != nil {
		return "", &SecretFileError{Path: path, Err: withoutPath(err)}
	}
	if len(data) > MaxSecretFileBytes {
		return "", &SecretFileError{Path: path, Err: ErrSecretTooLarge}
	}
	return string(data), nil
}

// withoutPath strips the path an *os.PathError repeats ("open /x:
// permission denied" gives "permission denied"); SecretFileError names the
// file once.
func withoutPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Redacted is what Redact puts where a secret stood.
const Redacted = "[redacted]"

// Redact replaces every secret in s with Redacted: a broken server or proxy
// may echo credentials back in its answer, and Result.Err must never carry
// one. Empty secrets are skipped. Longer secrets go first: a password may
// also stand inside the base64 of "user:password", and replacing it there
// first would leave the rest of the base64 behind. Redact before cutting
// text short (OneLine), so no part of a secret survives the cut.
func Redact(s string, secrets ...string) string {
	ordered := slices.Clone(secrets)
	slices.SortStableFunc(ordered, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range ordered {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, Redacted)
		}
	}
	return s
}
