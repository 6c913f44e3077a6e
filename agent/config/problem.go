package config

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file, located as precisely as the
// YAML allows so a person can go straight to it.
type Problem struct {
	File   string // the config file's path as given to Load ("" for Parse without a name)
	Line   int    // 1-based; 0 when the problem has no single place (a missing top-level key)
	Column int    // 1-based; 0 when unknown
	Key    string // dotted path such as "devices[1].port"; "" for whole-file problems
	Msg    string
}

// Error renders the problem the way compilers do, so editors can jump to it:
//
//	vigil.yaml:12: devices[1].driver: unknown driver "foo" (known: masimo-ascii)
func (p Problem) Error() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		b.WriteString(p.File + ":" + strconv.Itoa(p.Line) + ": ")
	case p.File != "":
		b.WriteString(p.File + ": ")
	case p.Line > 0:
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is the error Load and Parse return: every problem found in the
// file, in file order, not just the first, so one edit-and-check round fixes
// them all. Use errors.As to get at the list.
type Problems []Problem

// Error renders one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each Problem, so errors.As(err, &config.Problem{}) finds the
// first one.
func (ps Problems) Unwrap() []error {
	out := make([]error, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}
