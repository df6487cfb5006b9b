package main

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestPlainText(t *testing.T) {
	for _, c := range []struct {
		name string
		in   any
		want string
	}{
		{"absent", nil, "undefined"},
		{"string", "serial=console:127.0.0.1:31510", "serial=console:127.0.0.1:31510"},
		{"empty string", "", ""},
		{"integer", float64(31022), "31022"},
		{"zero", float64(0), "0"},
		{"negative", float64(-1), "-1"},
		{"fraction", 1.5, "1.5"},
		{"large integer", 1e20, "100000000000000000000"},
		{"beyond JavaScript's fixed notation", 1e21, "1e+21"},
		{"bool", true, "true"},
		{"list as JSON", []any{float64(1), "a"}, `[1,"a"]`},
		{"object as JSON", map[string]any{"a": float64(1)}, `{"a":1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := plainText(c.in); got != c.want {
				t.Errorf("plainText(%#v) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestJSONText(t *testing.T) {
	for _, c := range []struct {
		name string
		in   any
		want string
	}{
		{"null", nil, "null"},
		{"string, quoted", "/nix/store/a", `"/nix/store/a"`},
		{"no HTML escaping, as JSON.stringify", "a<b>&c", `"a<b>&c"`},
		{"number", float64(42), "42"},
		{"fraction", 0.25, "0.25"},
		{"bool", false, "false"},
		{"list", []any{"x", float64(2), nil}, `["x",2,null]`},
		{"object, keys sorted, no trailing newline", map[string]any{"b": float64(1), "a": []any{}}, `{"a":[],"b":1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := jsonText(c.in); got != c.want {
				t.Errorf("jsonText(%#v) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestSame(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b any
		want bool
	}{
		{"both absent", nil, nil, true},
		{"equal strings", "a", "a", true},
		{"different strings", "a", "b", false},
		{"equal numbers", float64(1), float64(1), true},
		{"number and its text", float64(1), "1", false},
		{"equal lists", []any{float64(1), "x"}, []any{float64(1), "x"}, true},
		{"lists in another order", []any{float64(1), "x"}, []any{"x", float64(1)}, false},
		{"empty list and absent (as [] and null)", []any{}, nil, false},
		{"nested objects, key order irrelevant", map[string]any{"a": float64(1), "b": map[string]any{"c": true}}, map[string]any{"b": map[string]any{"c": true}, "a": float64(1)}, true},
		{"nested objects differing deep down", map[string]any{"b": map[string]any{"c": true}}, map[string]any{"b": map[string]any{"c": false}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := same(c.a, c.b); got != c.want {
				t.Errorf("same(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
			}
		})
	}
}

func TestSameKind(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b any
		want bool
	}{
		{"two strings, whatever their text", "a", "b", true},
		{"a string and an absent value", "a", nil, true},
		{"an absent value and a string", nil, "", true},
		{"both absent", nil, nil, true},
		{"a string and a number", "1", float64(1), false},
		{"a number and an absent value", float64(1), nil, false},
		{"equal numbers", float64(2), float64(2), true},
		{"different numbers", float64(2), float64(3), false},
		{"a bool and a string", true, "true", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := sameKind(c.a, c.b); got != c.want {
				t.Errorf("sameKind(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
			}
		})
	}
}

func TestSameText(t *testing.T) {
	a := props{"create": "echo a", "n": float64(1)}
	if !sameText(a, props{"create": "echo a"}, "create") {
		t.Error("the same text is the same")
	}
	if sameText(a, props{"create": "echo b"}, "create") {
		t.Error("another text is not the same")
	}
	if !sameText(props{}, props{"update": ""}, "update") {
		t.Error(`an absent value is ""`)
	}
	if sameText(a, props{"n": "1"}, "n") {
		t.Error("a number is not its text")
	}
}

func TestPropsAccessors(t *testing.T) {
	p := props{
		"s":       "text",
		"u":       unknown,
		"null":    nil,
		"b":       true,
		"n":       float64(7),
		"l":       []any{"x"},
		"o":       map[string]any{"k": "v"},
		"wrongly": float64(1),
	}
	for _, c := range []struct {
		key  string
		want bool
	}{{"s", true}, {"u", false}, {"null", false}, {"missing", false}, {"b", true}} {
		if got := p.known(c.key); got != c.want {
			t.Errorf("known(%q) = %v, want %v", c.key, got, c.want)
		}
	}
	if p.str("s") != "text" || p.str("wrongly") != "" || p.str("missing") != "" {
		t.Errorf("str: %q %q %q", p.str("s"), p.str("wrongly"), p.str("missing"))
	}
	if p.strOr("s", "fb") != "text" || p.strOr("u", "fb") != "fb" || p.strOr("missing", "fb") != "fb" {
		t.Errorf("strOr: %q %q %q", p.strOr("s", "fb"), p.strOr("u", "fb"), p.strOr("missing", "fb"))
	}
	if !p.boolean("b") || p.boolean("s") || p.boolean("missing") {
		t.Error("boolean")
	}
	if n, ok := p.number("n"); !ok || n != 7 {
		t.Errorf("number(n) = %v, %v", n, ok)
	}
	if _, ok := p.number("s"); ok {
		t.Error("number(s) is no number")
	}
	if len(p.list("l")) != 1 || p.list("s") != nil {
		t.Error("list")
	}
	if p.object("o")["k"] != "v" || p.object("s") != nil {
		t.Error("object")
	}

	with := p.with(props{"s": "new", "extra": "x"})
	if with["s"] != "new" || with["extra"] != "x" || with["n"] != float64(7) {
		t.Errorf("with: %v", with)
	}
	if p["s"] != "text" {
		t.Error("with changed the original")
	}
	if _, ok := p["extra"]; ok {
		t.Error("with added to the original")
	}
}

func TestPropsOfDropsTheDynamicProvider(t *testing.T) {
	s, err := structpb.NewStruct(map[string]any{"name": "eval", dynamicProviderKey: "exports.handler = ...", "ports": []any{float64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	p := propsOf(s)
	if _, ok := p[dynamicProviderKey]; ok {
		t.Errorf("%s kept: %v", dynamicProviderKey, p)
	}
	if p.str("name") != "eval" || !same(p["ports"], []any{float64(1)}) {
		t.Errorf("propsOf = %v", p)
	}
	if got := propsOf(nil); got == nil || len(got) != 0 {
		t.Errorf("propsOf(nil) = %#v, want an empty map", got)
	}
	back, err := p.toStruct()
	if err != nil {
		t.Fatal(err)
	}
	if !same(back.AsMap(), map[string]any(p)) {
		t.Errorf("toStruct round trip: %v", back.AsMap())
	}
}
