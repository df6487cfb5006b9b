package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
)

// unknown is how the engine marks a value not known yet (a preview's outputs of resources to be made).
const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

// dynamicProviderKey is the serialized Node.js provider a state written by
// the dynamic providers this plugin replaced carries; it is no input of ours.
const dynamicProviderKey = "__provider"

// props is one resource's properties, as the engine sends them.
type props map[string]any

func propsOf(s *structpb.Struct) props {
	if s == nil {
		return props{}
	}
	m := s.AsMap()
	delete(m, dynamicProviderKey)
	return m
}

func (p props) toStruct() (*structpb.Struct, error) {
	return structpb.NewStruct(p)
}

// known: present and not the engine's unknown marker.
func (p props) known(key string) bool {
	v, ok := p[key]
	return ok && v != nil && v != unknown
}

func (p props) str(key string) string {
	s, _ := p[key].(string)
	return s
}

// strOr: the value when it is known, else the fallback (a preview's unknown input).
func (p props) strOr(key, fallback string) string {
	if !p.known(key) {
		return fallback
	}
	return p.str(key)
}

func (p props) boolean(key string) bool {
	b, _ := p[key].(bool)
	return b
}

func (p props) number(key string) (float64, bool) {
	f, ok := p[key].(float64)
	return f, ok
}

func (p props) list(key string) []any {
	l, _ := p[key].([]any)
	return l
}

func (p props) object(key string) map[string]any {
	m, _ := p[key].(map[string]any)
	return m
}

// copyProps: a shallow copy, to which outputs are added.
func (p props) with(extra props) props {
	out := make(props, len(p)+len(extra))
	for k, v := range p {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// same compares two values as their JSON would (an absent value is null).
func same(a, b any) bool { return reflect.DeepEqual(a, b) }

// sameText compares two string values, an absent one being "".
func sameText(a, b props, key string) bool {
	return a.str(key) == b.str(key) && sameKind(a[key], b[key])
}

// sameKind: two values both strings (or absent), or else equal as values.
func sameKind(a, b any) bool {
	_, as := a.(string)
	_, bs := b.(string)
	if (as || a == nil) && (bs || b == nil) {
		return true
	}
	return same(a, b)
}

// jsonText renders a value as JSON.stringify would, for messages.
func jsonText(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n"))
}

// plainText renders a value as a template string would (`${v}`), for messages.
func plainText(v any) string {
	switch x := v.(type) {
	case nil:
		return "undefined"
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e21 {
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return jsonText(v)
	}
}
