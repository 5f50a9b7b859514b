package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/pcm-project/pcm/events"
)

// readJobFile reads a job file (YAML or JSON). Its errors name the file
// and the field in the file's own words: "job file job.yaml: command: got a
// string, want an object".
func readJobFile(path string) (jobFile, error) {
	var jf jobFile
	b, err := os.ReadFile(path)
	if err != nil {
		return jf, fmt.Errorf("reading job file: %w", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return jf, fmt.Errorf("job file %s is not YAML or JSON: %s", path, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jf); err != nil {
		return jf, fmt.Errorf("job file %s: %s", path, jobFileError(err, j))
	}
	return jf, nil
}

// jobFileError says what is wrong with a field of the job file doc (as
// JSON).
func jobFileError(err error, doc []byte) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return fmt.Sprintf("got %s, want an object of job fields", article(te.Value))
		}
		return fmt.Sprintf("%s: got %s, want %s", field, article(te.Value), kindWord(te.Type))
	}
	if errors.Is(err, events.ErrTimeout) { // the one duration of a job file
		return "command.timeout: " + err.Error()
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		// encoding/json does not say where: a field of a section (command,
		// detect, rollout) is one the document's top level does not have.
		var doc0 map[string]json.RawMessage
		_ = json.Unmarshal(doc, &doc0)
		if unquoted, uerr := strconv.Unquote(name); uerr == nil {
			if _, atTop := doc0[unquoted]; !atTop {
				for _, sec := range []struct {
					field string
					typ   reflect.Type
				}{
					{"command", reflect.TypeFor[events.CommandLine]()},
					{"detect", reflect.TypeFor[events.DetectCommand]()},
					{"rollout", reflect.TypeFor[events.RolloutPlan]()},
				} {
					var keys map[string]json.RawMessage
					if json.Unmarshal(doc0[sec.field], &keys) != nil {
						continue
					}
					if _, in := keys[unquoted]; in {
						return fmt.Sprintf("%s: unknown field %s: %s has the fields %s (see README.md)", sec.field, name, sec.field, strings.Join(jsonFields(sec.typ), ", "))
					}
				}
			}
		}
		return fmt.Sprintf("unknown field %s: a job file has the fields %s (see README.md)", name, strings.Join(jsonFields(reflect.TypeFor[jobFile]()), ", "))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// article puts "a" or "an" before a JSON kind: "a string", "an object".
func article(kind string) string {
	switch kind {
	case "object", "array":
		return "an " + kind
	case "bool":
		return "true or false"
	}
	return "a " + kind
}

// kindWord names the JSON a Go type reads.
func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if fs := jsonFields(t); len(fs) > 0 {
			return "an object (" + strings.Join(fs, ", ") + ")"
		}
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(kindWord(t.Elem()), "a "), "an ") + "s"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Pointer:
		return kindWord(t.Elem())
	}
	return "a " + t.Kind().String()
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
