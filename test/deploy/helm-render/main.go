// helm-render renders a Helm chart's templates the way `helm template` does, for tests on machines
// without helm. The engine is Go's text/template, which is Helm's own; the functions are the few
// Helm and sprig functions our chart uses, written here with their documented semantics, so a chart
// that starts using another function fails to parse here ("function X not defined") instead of
// passing unchecked. Standard library only: `go build main.go` needs no module download.
//
//	helm-render -chart helm/sdxl-lora-service -chart-json chart.json -values values.json \
//	  [-release NAME] [-namespace NS] [-upgrade] [-notes FILE]
//
// chart.json is Chart.yaml as JSON, values.json the values already merged (values.yaml plus
// overrides, as helm merges -f files). Manifests go to stdout, each file after a
// "# Source: <chart>/templates/<file>" line; NOTES.txt goes to -notes when given.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// ---- entry point

func main() {
	chartDir := flag.String("chart", "", "chart folder (holds templates/)")
	chartJSON := flag.String("chart-json", "", "Chart.yaml as JSON (becomes .Chart)")
	valuesJSON := flag.String("values", "", "merged values as JSON (becomes .Values)")
	release := flag.String("release", "release-name", ".Release.Name")
	namespace := flag.String("namespace", "default", ".Release.Namespace")
	upgrade := flag.Bool("upgrade", false, "render as `helm upgrade` (.Release.IsUpgrade) instead of install")
	notesOut := flag.String("notes", "", "file to write the rendered templates/NOTES.txt to")
	flag.Parse()
	if *chartDir == "" || *chartJSON == "" || *valuesJSON == "" {
		fail(errors.New("usage: helm-render -chart DIR -chart-json FILE -values FILE [-release NAME] [-namespace NS] [-upgrade] [-notes FILE]"))
	}
	chart, err := readJSONObject(*chartJSON)
	if err != nil {
		fail(err)
	}
	values, err := readJSONObject(*valuesJSON)
	if err != nil {
		fail(err)
	}
	meta := chartMetadata(chart)
	name, _ := meta["Name"].(string)
	if name == "" {
		fail(errors.New("chart JSON has no name"))
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  meta,
		"Release": map[string]interface{}{
			"Name": *release, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": !*upgrade, "IsUpgrade": *upgrade, "Revision": revision(*upgrade),
		},
		// Only what a chart may ask without a cluster; `helm template` fills in its defaults the same way.
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"},
		},
	}
	out, notes, err := renderChart(*chartDir, name, top)
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
	if *notesOut != "" {
		if err := os.WriteFile(*notesOut, []byte(notes), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func revision(upgrade bool) int {
	if upgrade {
		return 2
	}
	return 1
}

func readJSONObject(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	// Plain Unmarshal on purpose: numbers become float64, exactly as Helm reads values.yaml, so
	// `{{ .Values.big }}` prints 1e+06 here too.
	var object map[string]interface{}
	if err := json.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if object == nil {
		object = map[string]interface{}{}
	}
	return object, nil
}

// chartMetadata turns Chart.yaml keys into the field names of Helm's chart.Metadata (.Chart.AppVersion).
func chartMetadata(chart map[string]interface{}) map[string]interface{} {
	meta := map[string]interface{}{}
	for key, value := range chart {
		switch key {
		case "apiVersion":
			meta["APIVersion"] = value
		default:
			meta[strings.ToUpper(key[:1])+key[1:]] = value
		}
	}
	return meta
}

// ---- rendering

// renderChart parses every file under templates/ into one template set (so any file may use any
// `define`), then executes each file whose name does not start with "_".
func renderChart(chartDir, chartName string, top map[string]interface{}) (manifests, notes string, err error) {
	root := template.New("gotpl")
	// Helm's default (non-strict) mode: a missing map key is no error, it prints as nothing.
	root.Option("missingkey=zero")
	root.Funcs(funcMap(root))

	templatesDir := filepath.Join(chartDir, "templates")
	var names []string
	err = filepath.Walk(templatesDir, func(file string, info os.FileInfo, walkErr error) error {
		if walkErr != nil || info.IsDir() {
			return walkErr
		}
		rel, _ := filepath.Rel(templatesDir, file)
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		text, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if _, err := root.New(name).Parse(string(text)); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return "", "", err
	}
	sort.Strings(names)

	var out strings.Builder
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		text, err := execute(root, name, top, chartName)
		if err != nil {
			return "", "", err
		}
		if base == "NOTES.txt" {
			notes = text
			continue
		}
		// Helm drops files that render to nothing (a disabled Ingress).
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(text))
	}
	return out.String(), notes, nil
}

// execute runs one template with .Template set for it, as Helm does for each file.
func execute(root *template.Template, name string, top map[string]interface{}, chartName string) (string, error) {
	data := map[string]interface{}{}
	for key, value := range top {
		data[key] = value
	}
	data["Template"] = map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"}
	var buf strings.Builder
	if err := root.ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	// Helm's engine does this too: the zero value of a missing key prints "<no value>" in text/template.
	return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
}

// ---- functions: Helm's own (include, required, toYaml, toJson, fromJson) and sprig's

const maxIncludeDepth = 1000 // Helm's recursion limit for include

func funcMap(root *template.Template) template.FuncMap {
	depth := map[string]int{}
	return template.FuncMap{
		// Helm: render a named template to a string, so its output can be piped (nindent, sha256sum).
		"include": func(name string, data interface{}) (string, error) {
			if depth[name] > maxIncludeDepth {
				return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
			}
			depth[name]++
			defer func() { depth[name]-- }()
			var buf strings.Builder
			if err := root.ExecuteTemplate(&buf, name, data); err != nil {
				return "", err
			}
			return buf.String(), nil
		},
		// Helm: fail rendering with the message when the value is nil or "".
		"required": func(message string, value interface{}) (interface{}, error) {
			if value == nil {
				return value, errors.New(message)
			}
			if s, ok := value.(string); ok && s == "" {
				return value, errors.New(message)
			}
			return value, nil
		},
		"toYaml":   toYAML,
		"toJson":   toJSON,
		"fromJson": fromJSON,

		// sprig
		"default":    dfault,
		"empty":      empty,
		"quote":      quote,
		"toString":   strval,
		"int":        func(v interface{}) int { return int(toInt64(v)) },
		"sub":        func(a, b interface{}) int64 { return toInt64(a) - toInt64(b) },
		"mul":        mul,
		"trunc":      trunc,
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(substr, s string) bool { return strings.Contains(s, substr) },
		"replace":    func(old, new, s string) string { return strings.Replace(s, old, new, -1) },
		"join":       func(sep string, v interface{}) string { return strings.Join(strslice(v), sep) },
		"indent":     indent,
		"nindent":    func(spaces int, s string) string { return "\n" + indent(spaces, s) },
		"sha256sum":  func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) },
		"dict":       dict,
		"list":       func(v ...interface{}) []interface{} { return v },
		"set": func(d map[string]interface{}, key string, value interface{}) map[string]interface{} {
			d[key] = value
			return d
		},
		"hasKey": func(d map[string]interface{}, key string) bool { _, ok := d[key]; return ok },
		// 0, 1, ..., n-1
		"until": func(n interface{}) []int {
			out := make([]int, 0)
			for i := 0; i < int(toInt64(n)); i++ {
				out = append(out, i)
			}
			return out
		},
		// The value's reflect kind; "invalid" for nil (an unset or null value).
		"kindIs": func(kind string, v interface{}) bool {
			if v == nil {
				return kind == "invalid"
			}
			return reflect.ValueOf(v).Kind().String() == kind
		},
	}
}

// strval is sprig's conversion of anything to a string (nil becomes "<nil>", as in sprig).
func strval(v interface{}) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

// strslice is sprig's list-to-[]string for join: nil items are left out.
func strslice(v interface{}) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []interface{}:
		out := make([]string, 0, len(v))
		for _, item := range v {
			if item != nil {
				out = append(out, strval(item))
			}
		}
		return out
	}
	value := reflect.ValueOf(v)
	switch value.Kind() {
	case reflect.Array, reflect.Slice:
		out := make([]string, 0, value.Len())
		for i := 0; i < value.Len(); i++ {
			if item := value.Index(i).Interface(); item != nil {
				out = append(out, strval(item))
			}
		}
		return out
	case reflect.Invalid:
		return []string{}
	default:
		return []string{strval(v)}
	}
}

// empty is sprig's truthiness: nil, zero numbers, false, "" and empty maps and lists are empty.
func empty(given interface{}) bool {
	value := reflect.ValueOf(given)
	if !value.IsValid() {
		return true
	}
	switch value.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.String:
		return value.Len() == 0
	case reflect.Bool:
		return !value.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return value.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return value.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return value.Float() == 0
	case reflect.Complex64, reflect.Complex128:
		return value.Complex() == 0
	case reflect.Struct:
		return false
	default:
		return value.IsNil()
	}
}

// dfault is sprig's `default DEFAULT GIVEN`: GIVEN unless it is empty (so 0 and false take the default too).
func dfault(d interface{}, given ...interface{}) interface{} {
	if len(given) == 0 || empty(given[0]) {
		return d
	}
	return given[0]
}

// quote is sprig's: each non-nil argument as a Go-quoted string, joined by spaces.
func quote(args ...interface{}) string {
	out := make([]string, 0, len(args))
	for _, arg := range args {
		if arg != nil {
			out = append(out, fmt.Sprintf("%q", strval(arg)))
		}
	}
	return strings.Join(out, " ")
}

// toInt64 follows spf13/cast (sprig's int, sub, mul): floats truncate, bad strings are 0.
func toInt64(v interface{}) int64 {
	switch v := v.(type) {
	case nil:
		return 0
	case bool:
		if v {
			return 1
		}
		return 0
	case string:
		s := v
		if i := strings.Index(s, "."); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
			s = s[:i]
		}
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return 0
		}
		return n
	}
	value := reflect.ValueOf(v)
	switch value.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return value.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(value.Uint())
	case reflect.Float32, reflect.Float64:
		return int64(value.Float())
	}
	return 0
}

func mul(a interface{}, v ...interface{}) int64 {
	product := toInt64(a)
	for _, b := range v {
		product *= toInt64(b)
	}
	return product
}

// trunc is sprig's `trunc N s`: the first N bytes (a negative N keeps the last -N).
func trunc(c int, s string) string {
	if c < 0 && len(s)+c > 0 {
		return s[len(s)+c:]
	}
	if c >= 0 && len(s) > c {
		return s[:c]
	}
	return s
}

func indent(spaces int, s string) string {
	pad := strings.Repeat(" ", spaces)
	return pad + strings.Replace(s, "\n", "\n"+pad, -1)
}

// dict is sprig's: key/value pairs (keys made strings); a key without a value gets "".
func dict(pairs ...interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for i := 0; i < len(pairs); i += 2 {
		key := strval(pairs[i])
		if i+1 >= len(pairs) {
			out[key] = ""
			continue
		}
		out[key] = pairs[i+1]
	}
	return out
}

// toJSON and fromJSON are Helm's: errors become "" and a map with an "Error" key.
func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	out := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		out["Error"] = err.Error()
	}
	return out
}

// ---- toYaml

// toYAML is Helm's toYaml: the value's YAML without the final newline, "" when it cannot be
// marshalled. Like sigs.k8s.io/yaml (Helm's marshaller) it goes through JSON first, so maps come
// out with sorted keys and whole floats as integers (120, not 1.2e+02). Block style, lists at
// their key's indentation (as go-yaml writes them); strings are quoted whenever YAML 1.1 (what
// Kubernetes reads) could take them for something else.
func toYAML(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	decoder := json.NewDecoder(strings.NewReader(string(data)))
	decoder.UseNumber()
	var node interface{}
	if err := decoder.Decode(&node); err != nil {
		return ""
	}
	if isCollection(node) {
		return strings.Join(yamlLines(node), "\n")
	}
	return yamlScalar(node)
}

func isCollection(node interface{}) bool {
	switch n := node.(type) {
	case map[string]interface{}:
		return len(n) > 0
	case []interface{}:
		return len(n) > 0
	}
	return false
}

// yamlLines writes a non-empty map or list as lines relative to column 0.
func yamlLines(node interface{}) []string {
	var lines []string
	switch n := node.(type) {
	case map[string]interface{}:
		keys := make([]string, 0, len(n))
		for key := range n {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			child := n[key]
			k := yamlScalar(key)
			switch {
			case !isCollection(child):
				lines = append(lines, k+": "+yamlScalar(child))
			case isMap(child):
				lines = append(lines, k+":")
				for _, line := range yamlLines(child) {
					lines = append(lines, "  "+line)
				}
			default: // a list stays at its key's column
				lines = append(lines, k+":")
				lines = append(lines, yamlLines(child)...)
			}
		}
	case []interface{}:
		for _, item := range n {
			if !isCollection(item) {
				lines = append(lines, "- "+yamlScalar(item))
				continue
			}
			for i, line := range yamlLines(item) {
				if i == 0 {
					lines = append(lines, "- "+line)
				} else {
					lines = append(lines, "  "+line)
				}
			}
		}
	}
	return lines
}

func isMap(node interface{}) bool {
	_, ok := node.(map[string]interface{})
	return ok
}

var (
	// Characters a plain (unquoted) scalar may hold here; anything else gets quoted.
	plainChars = regexp.MustCompile(`^[A-Za-z0-9_./@+=~() :-]+$`)
	// YAML 1.1 words that are not strings: booleans and null.
	yaml11Words = regexp.MustCompile(`^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL)$`)
	// A leading digit is a string only as a number with a unit (10Gi, 250m, 30s); 1e3, 0x1F, 1:20, 2024-01-01 are not.
	quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[A-Za-z]+$`)
	hexInt   = regexp.MustCompile(`^0[xX][0-9a-fA-F]+$`)
)

func yamlScalar(node interface{}) string {
	switch n := node.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(n)
	case json.Number:
		return n.String()
	case string:
		if n == "" {
			return `""`
		}
		plain := plainChars.MatchString(n) &&
			!yaml11Words.MatchString(n) &&
			n == strings.TrimSpace(n) &&
			!strings.Contains(n, ": ") && !strings.HasSuffix(n, ":") &&
			!strings.ContainsAny(n[:1], "-:?~.+=@(") &&
			(!strings.ContainsAny(n[:1], "0123456789") || (quantity.MatchString(n) && !hexInt.MatchString(n)))
		if plain {
			return n
		}
		// A JSON string is a valid YAML double-quoted scalar.
		data, _ := json.Marshal(n)
		return string(data)
	case map[string]interface{}:
		return "{}"
	case []interface{}:
		return "[]"
	}
	return fmt.Sprintf("%v", node)
}
