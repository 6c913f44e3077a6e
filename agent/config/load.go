package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// maxConfigSize bounds what Load reads: a real config is a few kilobytes, so
// anything near this is the wrong file, and reading it whole would only cost
// memory.
const maxConfigSize = 1 << 20

// Load reads, decodes, defaults and validates the config file at path, and
// reads the secrets it names. Any error is a Problems listing everything
// wrong with the file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: "cannot read config: " + fsReason(err)}}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, Problems{{File: path, Msg: "cannot read config: " + fsReason(err)}}
	}
	if len(data) > maxConfigSize {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("config is larger than %d bytes; is this the right file?", maxConfigSize)}}
	}
	return Parse(path, data)
}

// Parse is Load for a config already in memory; file names it in problems and
// anchors relative paths (the secret and TLS files) to its directory. With
// file "" they are relative to the working directory.
func Parse(file string, data []byte) (*Config, error) {
	w := &walker{file: file, nodes: map[string]*yaml.Node{}, bad: map[string]bool{}}
	if file != "" {
		w.dir = filepath.Dir(file)
	}
	cfg := &Config{File: file}
	if root := w.document(data); root != nil {
		w.config(root, cfg)
		w.crossCheck(cfg)
		w.crossCheckAlarms(cfg)
	}
	if len(w.problems) > 0 {
		slices.SortStableFunc(w.problems, func(a, b Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, w.problems
	}
	return cfg, nil
}

// walker decodes the YAML node tree by hand rather than with yaml.Unmarshal:
// that way every problem (not just the first) gets its line and dotted key,
// and unknown device keys can be handed to the driver as options.
type walker struct {
	file     string
	dir      string // base for relative paths
	problems Problems
	nodes    map[string]*yaml.Node // value node of each key present, by dotted path
	bad      map[string]bool       // paths that already have a problem
}

func (w *walker) add(n *yaml.Node, key, format string, args ...any) {
	p := Problem{File: w.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	w.problems = append(w.problems, p)
	w.bad[key] = true
}

// at returns the node recorded for path, or nil, for problems found after
// decoding.
func (w *walker) at(path string) *yaml.Node { return w.nodes[path] }

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns the top-level mapping, or nil after
// reporting why there is none.
func (w *walker) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // no document at all: empty or comments only
			w.add(nil, "", "config is empty")
			return nil
		}
		w.syntax(err, data)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		w.add(at, "", "a second YAML document (after ---) is not allowed; put everything in one")
		return nil
	case !errors.Is(err, io.EOF):
		w.syntax(err, data)
		return nil
	}
	if len(doc.Content) == 0 {
		w.add(nil, "", "config is empty")
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		w.add(nil, "", "config is empty")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		w.add(root, "", "the config must be a mapping of keys (site:, room:, devices:, ...), got %s", describe(root))
		return nil
	}
	return root
}

// syntax reports a YAML parse error at the line the parser gives. Tabs in
// the indentation are located here instead: the parser names the line of the
// enclosing block, not the one with the tab, and tabs copied from an editor
// are the most common syntax error in hand-written YAML.
func (w *walker) syntax(err error, data []byte) {
	for i, line := range strings.Split(string(data), "\n") {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if col := strings.IndexByte(indent, '\t'); col >= 0 && len(indent) < len(line) {
			w.problems = append(w.problems, Problem{File: w.file, Line: i + 1, Column: col + 1,
				Msg: "YAML syntax: a tab in the indentation; YAML indents with spaces only"})
			return
		}
	}
	line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineError.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	// yaml.v3 (decode.go, parser.fail) adds 1 to the 0-based line only for
	// scanner errors; parser errors carry the 0-based line, and none at all
	// when the problem is on the first line.
	if slices.Contains(yamlParserProblems, msg) {
		line++
	}
	w.problems = append(w.problems, Problem{File: w.file, Line: line, Msg: "YAML syntax: " + msg})
}

// yamlParserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner; their line numbers are 0-based.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected <document start>",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected node content",
	"did not find expected <stream-start>",
	"found duplicate %YAML directive",
	"found duplicate %TAG directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// pair is one key: value of a mapping.
type pair struct {
	name     string
	key, val *yaml.Node
	path     string
}

// mapping checks that n is a mapping and returns its pairs, reporting
// duplicate keys, non-string keys and merge keys. A null n (a key with no
// value) is an empty mapping: all defaults.
func (w *walker) mapping(n *yaml.Node, path, what string) ([]pair, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected %s, got %s", what, describe(n))
		return nil, false
	}
	var out []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.add(k, path, "keys must be plain words, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			w.add(k, path, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		p := pair{name: k.Value, key: k, val: resolve(v), path: join(path, k.Value)}
		if first, dup := seen[k.Value]; dup {
			w.add(k, p.path, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		w.nodes[p.path] = p.val
		out = append(out, p)
	}
	return out, true
}

// unknown reports a key the schema does not have.
func (w *walker) unknown(p pair, known []string, extra string) {
	w.add(p.key, p.path, "unknown key (known: %s)%s", strings.Join(known, ", "), extra)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows YAML aliases (*name) to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		}
		return "a string (" + quote(n.Value) + ")"
	}
	return "something else"
}

// quote shows a config value in a message, shortened so a pasted blob cannot
// drown the message.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// text returns a scalar's text. Strings are taken as written, so "0403" (a
// USB id YAML would read as an octal number) or stop_bits: 1 keep their
// spelling. set is false for null (the key is as good as absent) and after
// reporting a wrong type.
func (w *walker) text(p pair) (s string, set bool) {
	if p.val.Kind != yaml.ScalarNode {
		w.add(p.val, p.path, "expected a string, got %s", describe(p.val))
		return "", false
	}
	if isNull(p.val) {
		return "", false
	}
	return p.val.Value, true
}

// integer decodes a whole number.
func (w *walker) integer(p pair) (int, bool) {
	if isNull(p.val) {
		return 0, false
	}
	if p.val.Kind != yaml.ScalarNode || p.val.ShortTag() != "!!int" {
		w.add(p.val, p.path, "expected a whole number, got %s", describe(p.val))
		return 0, false
	}
	var v int
	if err := p.val.Decode(&v); err != nil {
		w.add(p.val, p.path, "number %s is out of range", p.val.Value)
		return 0, false
	}
	return v, true
}

// duration decodes a Go duration string. A bare number is refused rather
// than given a unit: 10 could mean seconds to one reader and minutes to
// another, and a stale limit off by 60x shows frozen values as live.
func (w *walker) duration(p pair) (time.Duration, bool) {
	if isNull(p.val) {
		return 0, false
	}
	if p.val.Kind != yaml.ScalarNode {
		w.add(p.val, p.path, "expected a duration such as \"10s\", got %s", describe(p.val))
		return 0, false
	}
	s := strings.TrimSpace(p.val.Value)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		w.add(p.val, p.path, "duration %s has no unit: write it with one, e.g. \"%ss\" or \"%sm\"", s, s, s)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		w.add(p.val, p.path, "invalid duration %s: use Go duration syntax such as \"10s\", \"5m\" or \"1h30m\"", quote(p.val.Value))
		return 0, false
	}
	return d, true
}

// fsReason is the part of a file error worth showing, without repeating the
// path the message already names.
func fsReason(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "file does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}
