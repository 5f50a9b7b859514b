package events

import (
	"bytes"
	"embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFS holds one JSON schema per event type, named <type>.json.
//
//go:embed schemas/*.json
var schemaFS embed.FS

var (
	schemasOnce sync.Once
	schemas     map[string]*jsonschema.Schema
	schemasErr  error
)

// Schema returns the JSON schema document of an event type's data.
func Schema(eventType string) ([]byte, error) {
	b, err := schemaFS.ReadFile("schemas/" + eventType + ".json")
	if err != nil {
		return nil, fmt.Errorf("%w: no schema for %q", ErrUnknownType, eventType)
	}
	return b, nil
}

func compileSchemas() {
	schemas = map[string]*jsonschema.Schema{}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, typ := range Types {
		b, err := Schema(typ)
		if err != nil {
			schemasErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			schemasErr = fmt.Errorf("schema of %s: %w", typ, err)
			return
		}
		url := "pcm:" + typ + ".json"
		if err := c.AddResource(url, doc); err != nil {
			schemasErr = fmt.Errorf("schema of %s: %w", typ, err)
			return
		}
		s, err := c.Compile(url)
		if err != nil {
			schemasErr = fmt.Errorf("schema of %s: %w", typ, err)
			return
		}
		schemas[typ] = s
	}
}

// ValidateSchema checks data (the JSON data of an event) against the schema
// of eventType. A failure wraps ErrSchema (or ErrMalformed when data is not
// JSON, ErrUnknownType when the type has no schema).
func ValidateSchema(eventType string, data []byte) error {
	schemasOnce.Do(compileSchemas)
	if schemasErr != nil {
		return schemasErr
	}
	s, ok := schemas[eventType]
	if !ok {
		return fmt.Errorf("%w: no schema for %q", ErrUnknownType, eventType)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s data is not JSON: %v", ErrMalformed, eventType, err)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSchema, eventType, err)
	}
	return nil
}
