package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func TestDriftOf(t *testing.T) {
	for _, c := range []struct {
		name, recorded, now, want string
	}{
		{"the same line", `{"storePath":"/nix/store/a","outLink":"l"}`, `{"storePath":"/nix/store/a","outLink":"l"}`, ""},
		{"a key that differs, after noise lines", "noise\n" + `{"storePath":"/nix/store/a","outLink":"l"}`, `{"storePath":null,"outLink":"l"}`,
			`storePath: recorded "/nix/store/a", now null`},
		// Keys only the recorded line has (created, loaded) are not compared.
		{"keys only recorded are not compared", `{"publicKey":"k","created":true}`, `{"publicKey":"k"}`, ""},
		{"a key the record lacks reads as null", `{"a":1}`, `{"a":1,"b":"new"}`, `b: recorded null, now "new"`},
		{"a null the record lacks is no drift", `{"a":1}`, `{"a":1,"b":null}`, ""},
		{"in the order of the check's keys, not sorted", `{"a":1,"z":1,"m":1}`, `{"z":2,"m":1,"a":2}`, "z: recorded 1, now 2; a: recorded 1, now 2"},
		{"a key listed twice counts once, with its last value", `{"a":1}`, `{"a":1,"a":2}`, "a: recorded 1, now 2"},
		{"nested values compare as values, whatever their key order", `{"o":{"x":1,"y":[1,2]}}`, `{"o":{"y":[1,2],"x":1}}`, ""},
		{"nested values that differ", `{"o":{"x":1}}`, `{"o":{"x":2}}`, `o: recorded {"x":1}, now {"x":2}`},
		{"numbers written differently are the same", `{"n":1}`, `{"n":1.0}`, ""},
		{"a number and its text differ", `{"n":1}`, `{"n":"1"}`, `n: recorded 1, now "1"`},
		{"text with markup is shown as is", `{"s":"a"}`, `{"s":"<b>&"}`, `s: recorded "a", now "<b>&"`},
		{"a recorded stdout that is no JSON: every key of the check", "built it", `{"a":1,"b":"x"}`, `a: recorded null, now 1; b: recorded null, now "x"`},
		{"a check printing no JSON: no drift", `{"a":1}`, "all good", ""},
		{"a check printing a JSON list: no drift", `{"a":1}`, `[1,2]`, ""},
		{"a check printing null: no drift", `{"a":1}`, `null`, ""},
		{"a check printing nothing: no drift", `{"a":1}`, "", ""},
		{"the check's last line counts", `{"a":1}`, "{\"a\":2}\n{\"a\":1}\n", ""},
		{"blank lines around it are ignored", "{\"a\":1}\n\n", "\n  {\"a\":3}  \n", "a: recorded 1, now 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := driftOf(c.recorded, c.now); got != c.want {
				t.Errorf("driftOf(%q, %q) =\n%q\nwant\n%q", c.recorded, c.now, got, c.want)
			}
		})
	}
}

func failureList(failures []*pulumirpc.CheckFailure) []string {
	out := make([]string, 0, len(failures))
	for _, f := range failures {
		out = append(out, f.GetProperty()+": "+f.GetReason())
	}
	return out
}

func TestTextInputs(t *testing.T) {
	nonEmpty, text, optional := []string{"create", "dir"}, []string{"recorded"}, []string{"update", "check"}
	for _, c := range []struct {
		name string
		news props
		want []string
	}{
		{"all good", props{"create": "echo", "dir": "/p", "recorded": "", "update": "u"}, nil},
		{"optional ones may be absent or null", props{"create": "echo", "dir": "/p", "recorded": "x", "check": nil}, nil},
		{"an unknown value (preview) is text", props{"create": unknown, "dir": "/p", "recorded": unknown, "update": unknown}, nil},
		{"missing ones are required", props{"update": "u"}, []string{"create: is required", "dir: is required", "recorded: is required"}},
		{"null is missing", props{"create": nil, "dir": "/p", "recorded": nil}, []string{"create: is required", "recorded: is required"}},
		{"empty ones where text must not be", props{"create": "", "dir": "", "recorded": ""}, []string{"create: must not be empty", "dir: must not be empty"}},
		{"other kinds of values, shown as JSON", props{"create": float64(5), "dir": []any{"/p"}, "recorded": true, "update": map[string]any{"a": "b"}, "check": false},
			[]string{"create: must be a string, not 5", `dir: must be a string, not ["/p"]`, "recorded: must be a string, not true", `update: must be a string, not {"a":"b"}`, "check: must be a string, not false"}},
		{"keys not named are not judged", props{"create": "c", "dir": "/p", "recorded": "", "other": float64(1)}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := failureList(textInputs(c.news, nonEmpty, text, optional))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestKindChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		k    kind
		news props
		want []string
	}{
		{"HostCommand: create and dir, the rest optional", hostCommand{}, props{"create": "", "update": float64(1)},
			[]string{"create: must not be empty", "dir: is required", "update: must be a string, not 1"}},
		{"HostCommand: good", hostCommand{}, props{"create": "c", "dir": "/p", "triggers": []any{"x"}}, nil},
		{"HostState: check, repair and dir given, recorded text", hostState{}, props{"check": "c", "repair": "r", "dir": "/p"},
			[]string{"recorded: is required"}},
		{"HostState: good", hostState{}, props{"check": "c", "repair": "r", "dir": "/p", "recorded": ""}, nil},
		{"NetBridge", netBridge{}, props{"scriptPath": "host/net.sh", "stateDir": "s", "bridge": "br0", "gatewayCidr": "10.0.0.1/24", "nftTable": "", "dir": float64(1)},
			[]string{"nftTable: must not be empty", "dir: must be a string, not 1"}},
		{"NetTap", netTap{}, props{"scriptPath": "host/net.sh", "stateDir": "s", "bridge": "br0", "tap": "tap0"},
			[]string{"owner: is required"}},
		{"DaemonSetEndpoints", daemonSetEndpoints{}, props{"context": "c", "namespace": "n", "selector": "", "revision": float64(2)},
			[]string{"selector: must not be empty", "kubeconfig: is required", "revision: must be a string, not 2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := failureList(c.k.check(c.news))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestHostCommandDiff(t *testing.T) {
	base := props{"create": "make", "update": "make again", "dir": "/p", "check": "probe", "triggers": []any{"a"}, "stdout": "x", "live": "ok"}
	for _, c := range []struct {
		name     string
		olds     props
		news     props
		changed  []string
		replaces []string
		changes  bool
	}{
		{"nothing changed", base, base, nil, nil, false},
		{"a changed trigger replaces", base, base.with(props{"triggers": []any{"b"}}), []string{"triggers"}, []string{"triggers"}, true},
		{"no triggers and an empty list are the same", base.with(props{"triggers": nil}), base.with(props{"triggers": []any{}}), nil, nil, false},
		{"a changed command updates", base, base.with(props{"update": "other", "check": "probe2"}), []string{"update", "check"}, nil, true},
		{"an absent command and an empty one are the same", base.with(props{"delete": nil}), base.with(props{"delete": ""}), nil, nil, false},
		{"a degraded resource updates with nothing changed", base.with(props{"live": "degraded"}), base, nil, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := hostCommand{}.diff(context.Background(), nil, c.olds, c.news)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(d.changed, ",") != strings.Join(c.changed, ",") || strings.Join(d.replaces, ",") != strings.Join(c.replaces, ",") || d.changes != c.changes || !d.deleteBeforeReplace {
				t.Errorf("diff = %+v, want changed %v replaces %v changes %v (delete before replace)", d, c.changed, c.replaces, c.changes)
			}
		})
	}
}

func TestHostStateDiff(t *testing.T) {
	base := props{"check": "c", "repair": "r", "dir": "/p", "recorded": "{}", "stdout": "{}", "live": "ok"}
	for _, c := range []struct {
		name    string
		olds    props
		news    props
		changed []string
		changes bool
	}{
		{"nothing changed", base, base, nil, false},
		{"the command's output changed", base, base.with(props{"recorded": `{"a":1}`}), []string{"recorded"}, true},
		{"degraded", base.with(props{"live": "degraded"}), base, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := hostState{}.diff(context.Background(), nil, c.olds, c.news)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(d.changed, ",") != strings.Join(c.changed, ",") || d.changes != c.changes || len(d.replaces) != 0 {
				t.Errorf("diff = %+v", d)
			}
		})
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewID(t *testing.T) {
	a, b := newID(), newID()
	if !uuidPattern.MatchString(a) || a == b {
		t.Errorf("newID: %q, %q", a, b)
	}
}

// The HostCommand kind against /bin/sh: create in dir, outputs, errors, check and update.
func TestHostCommandRuns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var l lines
	c := &call{log: l.log}
	file := filepath.Join(dir, "made")

	in := props{
		"create": "pwd; echo note >&2; echo made >made",
		"update": `echo again >made; echo '{"file":"made"}'`,
		"delete": "rm made",
		"check":  `if [ -e made ]; then echo '{"file":"made"}'; else echo '{"file":null}'; fi`,
		"dir":    dir,
	}
	id, outs, err := hostCommand{}.create(ctx, c, in)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if got, _ := filepath.EvalSymlinks(outs.str("stdout")); got != real {
		t.Errorf("stdout %q, want the dir %q", outs.str("stdout"), dir)
	}
	if outs.str("stderr") != "note" || outs.str("live") != "ok" || outs.str("drift") != "" || outs.str("create") != in.str("create") || !uuidPattern.MatchString(id) {
		t.Errorf("create: id %q outs %v", id, outs)
	}
	if strings.Join(l.all(), "|") != "note" {
		t.Errorf("echoed %q", l.all())
	}

	// Recorded stdout is pwd's: the check's key is new, so it is drift until update records it.
	_, read, err := hostCommand{}.read(ctx, c, id, outs)
	if err != nil {
		t.Fatal(err)
	}
	if read.str("live") != "degraded" || read.str("drift") != `file: recorded null, now "made"` {
		t.Errorf("read: %v", read)
	}
	updated, err := hostCommand{}.update(ctx, c, read, in)
	if err != nil {
		t.Fatal(err)
	}
	if updated.str("stdout") != `{"file":"made"}` || updated.str("live") != "ok" || updated.str("drift") != "" {
		t.Errorf("update: %v", updated)
	}
	if b, _ := os.ReadFile(file); string(b) != "again\n" {
		t.Errorf("update did not run: %q", b)
	}
	_, read, err = hostCommand{}.read(ctx, c, id, updated)
	if err != nil || read.str("live") != "ok" || read.str("drift") != "" {
		t.Errorf("read after update: %v, %v", read, err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, read, err = hostCommand{}.read(ctx, c, id, updated)
	if err != nil || read.str("live") != "degraded" || read.str("drift") != `file: recorded "made", now null` {
		t.Errorf("read after the file went: %v, %v", read, err)
	}

	// Without an update command, update runs create.
	noUpdate := in.with(props{"update": nil})
	if _, err := (hostCommand{}).update(ctx, c, read, noUpdate); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "made\n" {
		t.Errorf("update without an update command: %q", b)
	}
	if err := (hostCommand{}).delete(ctx, c, updated); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("delete did not run: %v", err)
	}
	// No delete command: nothing to do. No check: read keeps the state.
	if err := (hostCommand{}).delete(ctx, c, props{"dir": dir}); err != nil {
		t.Error(err)
	}
	state := props{"create": "x", "dir": dir, "stdout": "s"}
	if gotID, got, err := (hostCommand{}).read(ctx, c, "id-1", state); err != nil || gotID != "id-1" || !same(map[string]any(got), map[string]any(state)) {
		t.Errorf("read without check: %q %v %v", gotID, got, err)
	}

	// Failures name the command and its stderr; a failing check fails the read.
	_, _, err = hostCommand{}.create(ctx, c, props{"create": "echo no disk >&2; exit 4", "dir": dir})
	if err == nil || err.Error() != "echo no disk >&2; exit 4 failed (exit 4):\nno disk" {
		t.Errorf("create error: %v", err)
	}
	_, _, err = hostCommand{}.read(ctx, c, id, updated.with(props{"check": "echo cannot look >&2; exit 2"}))
	if err == nil || err.Error() != "echo cannot look >&2; exit 2 failed (exit 2):\ncannot look" {
		t.Errorf("read error: %v", err)
	}
}

func TestHostCommandInAMovedCheckout(t *testing.T) {
	cwd, _ := os.Getwd()
	_, outs, err := hostCommand{}.create(context.Background(), &call{log: func(string) {}}, props{"create": "pwd", "dir": filepath.Join(t.TempDir(), "gone")})
	if err != nil {
		t.Fatal(err)
	}
	if outs.str("stdout") != cwd {
		t.Errorf("ran in %q, want the plugin's directory %q", outs.str("stdout"), cwd)
	}
}

// The HostState kind: carries the command's stdout, sees drift, repairs on update.
func TestHostStateRuns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &call{log: func(string) {}}
	in := props{
		"check":    `if [ -e link ]; then echo '{"link":true}'; else echo '{"link":false}'; fi`,
		"repair":   `touch link; echo repaired >&2; echo 'building'; echo '{"link":true,"repaired":1}'`,
		"dir":      dir,
		"recorded": "progress\n" + `{"link":true}`,
	}
	id, outs, err := hostState{}.create(ctx, c, in)
	if err != nil {
		t.Fatal(err)
	}
	if outs.str("stdout") != in.str("recorded") || outs.str("live") != "ok" || !uuidPattern.MatchString(id) {
		t.Errorf("create: %v", outs)
	}
	_, read, err := hostState{}.read(ctx, c, id, outs)
	if err != nil || read.str("live") != "degraded" || read.str("drift") != "link: recorded true, now false" {
		t.Fatalf("read: %v %v", read, err)
	}
	// The same command output, degraded: the repair runs and its stdout is carried on.
	repaired, err := hostState{}.update(ctx, c, read, in)
	if err != nil {
		t.Fatal(err)
	}
	if repaired.str("stdout") != "building\n"+`{"link":true,"repaired":1}` || repaired.str("live") != "ok" {
		t.Errorf("repair: %v", repaired)
	}
	if _, err := os.Stat(filepath.Join(dir, "link")); err != nil {
		t.Errorf("repair did not run: %v", err)
	}
	_, read, err = hostState{}.read(ctx, c, id, repaired)
	if err != nil || read.str("live") != "ok" {
		t.Errorf("read after repair: %v %v", read, err)
	}
	// The command ran again itself: its output is the state, no repair runs.
	os.Remove(filepath.Join(dir, "link"))
	again, err := hostState{}.update(ctx, c, read.with(props{"live": "degraded"}), in.with(props{"recorded": `{"link":false}`}))
	if err != nil || again.str("stdout") != `{"link":false}` {
		t.Errorf("update with a new record: %v %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "link")); !os.IsNotExist(err) {
		t.Errorf("the repair ran although the command ran again")
	}
	// A failing repair is an error naming it.
	_, err = hostState{}.update(ctx, c, read.with(props{"live": "degraded"}), in.with(props{"repair": "echo denied >&2; exit 1"}))
	if err == nil || err.Error() != "echo denied >&2; exit 1 failed (exit 1):\ndenied" {
		t.Errorf("repair error: %v", err)
	}
	if err := (hostState{}).delete(ctx, c, read); err != nil {
		t.Error(err)
	}
}
