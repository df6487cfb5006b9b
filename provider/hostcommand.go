package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// hostCommand: a shell command on this host (components/hostCommand.ts has
// the semantics, local.Command's subset): create runs on create and its
// stdout/stderr become outputs; update runs when an input other than triggers
// changes; delete runs on delete; a changed trigger replaces; check, a
// read-only command printing the host state as one JSON line shaped like
// create's last line, lets refresh see drift ("degraded"), which the next up
// repairs by running update.
type hostCommand struct{}

// hostState: the refresh-and-repair companion of a local.Command (the
// command backend), with the same check; it carries the command's stdout on,
// or the repair's after a repair.
type hostState struct{}

// shell runs `/bin/sh -c command` in dir, stderr passed on line by line.
func shell(ctx context.Context, c *call, command, dir string) (string, string, error) {
	return run(ctx, "/bin/sh", []string{"-c", command}, runOptions{dir: projectWorkDir(dir), label: command, echo: true, log: c.log})
}

// driftOf lists the keys of now's last JSON line whose value differs from the
// recorded stdout's last JSON line, as "key: recorded X, now Y"; "" when none.
func driftOf(recorded, now string) string {
	before, _ := lastObject(recorded)
	after, order := lastObject(now)
	var parts []string
	for _, k := range order {
		if !same(before[k], after[k]) {
			parts = append(parts, fmt.Sprintf("%s: recorded %s, now %s", k, jsonText(before[k]), jsonText(after[k])))
		}
	}
	return strings.Join(parts, "; ")
}

// lastObject decodes the last line of text as a JSON object, with its keys in order; anything else is empty.
func lastObject(text string) (map[string]any, []string) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	line := []byte(lines[len(lines)-1])
	var value map[string]any
	if err := json.Unmarshal(line, &value); err != nil || value == nil {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return value, nil
	}
	var order []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			break
		}
		if key, ok := tok.(string); ok && !slices.Contains(order, key) {
			order = append(order, key)
		}
	}
	return value, order
}

// observe runs the check and compares it with what was recorded; a failing check is an error naming it.
func observe(ctx context.Context, c *call, check, dir, recorded string) (props, error) {
	stdout, _, err := run(ctx, "/bin/sh", []string{"-c", check}, runOptions{dir: projectWorkDir(dir), label: check, echo: true, log: c.log})
	if err != nil {
		return nil, err
	}
	drift := driftOf(recorded, stdout)
	live := "ok"
	if drift != "" {
		live = "degraded"
	}
	return props{"live": live, "drift": drift}, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// textInputs fails each key that is not a string: nonEmpty ones must be
// given and not empty, text ones given, optional ones absent or a string.
func textInputs(news props, nonEmpty, text, optional []string) []*pulumirpc.CheckFailure {
	var failures []*pulumirpc.CheckFailure
	fail := func(k, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: k, Reason: reason})
	}
	for _, k := range append(append([]string{}, nonEmpty...), text...) {
		s, isText := news[k].(string)
		switch {
		case news[k] == nil:
			fail(k, "is required")
		case !isText:
			fail(k, "must be a string, not "+jsonText(news[k]))
		case s == "" && slices.Contains(nonEmpty, k):
			fail(k, "must not be empty")
		}
	}
	for _, k := range optional {
		if _, isText := news[k].(string); news[k] != nil && !isText {
			fail(k, "must be a string, not "+jsonText(news[k]))
		}
	}
	return failures
}

func (hostCommand) check(news props) []*pulumirpc.CheckFailure {
	return textInputs(news, []string{"create", "dir"}, nil, []string{"update", "delete", "check"})
}

func (hostCommand) diff(_ context.Context, _ *call, olds, news props) (diffResult, error) {
	var d diffResult
	d.deleteBeforeReplace = true
	oldTriggers, newTriggers := olds["triggers"], news["triggers"]
	if oldTriggers == nil {
		oldTriggers = []any{}
	}
	if newTriggers == nil {
		newTriggers = []any{}
	}
	if !same(oldTriggers, newTriggers) {
		d.replaces = append(d.replaces, "triggers")
		d.changed = append(d.changed, "triggers")
	}
	for _, k := range []string{"create", "update", "delete", "dir", "check"} {
		if olds.str(k) != news.str(k) || !sameKind(olds[k], news[k]) {
			d.changed = append(d.changed, k)
		}
	}
	d.changes = len(d.changed) > 0 || olds.str("live") == "degraded"
	return d, nil
}

func (hostCommand) create(ctx context.Context, c *call, inputs props) (string, props, error) {
	stdout, stderr, err := shell(ctx, c, inputs.str("create"), inputs.str("dir"))
	if err != nil {
		return "", nil, err
	}
	return newID(), inputs.with(props{"stdout": stdout, "stderr": stderr, "live": "ok", "drift": ""}), nil
}

func (hostCommand) read(ctx context.Context, c *call, id string, state props) (string, props, error) {
	if state.str("check") == "" {
		return id, state, nil
	}
	seen, err := observe(ctx, c, state.str("check"), state.str("dir"), state.str("stdout"))
	if err != nil {
		return "", nil, err
	}
	return id, state.with(seen), nil
}

func (hostCommand) update(ctx context.Context, c *call, _, news props) (props, error) {
	command := news.str("update")
	if command == "" {
		command = news.str("create")
	}
	stdout, stderr, err := shell(ctx, c, command, news.str("dir"))
	if err != nil {
		return nil, err
	}
	return news.with(props{"stdout": stdout, "stderr": stderr, "live": "ok", "drift": ""}), nil
}

func (hostCommand) delete(ctx context.Context, c *call, state props) error {
	if state.str("delete") == "" {
		return nil
	}
	_, _, err := shell(ctx, c, state.str("delete"), state.str("dir"))
	return err
}

func (hostState) check(news props) []*pulumirpc.CheckFailure {
	return textInputs(news, []string{"check", "repair", "dir"}, []string{"recorded"}, nil)
}

func (hostState) diff(_ context.Context, _ *call, olds, news props) (diffResult, error) {
	var d diffResult
	for _, k := range []string{"check", "repair", "dir", "recorded"} {
		if !same(olds[k], news[k]) {
			d.changed = append(d.changed, k)
		}
	}
	d.changes = len(d.changed) > 0 || olds.str("live") == "degraded"
	return d, nil
}

func (hostState) create(_ context.Context, _ *call, inputs props) (string, props, error) {
	return newID(), inputs.with(props{"stdout": inputs["recorded"], "live": "ok", "drift": ""}), nil
}

func (hostState) read(ctx context.Context, c *call, id string, state props) (string, props, error) {
	seen, err := observe(ctx, c, state.str("check"), state.str("dir"), state.str("stdout"))
	if err != nil {
		return "", nil, err
	}
	return id, state.with(seen), nil
}

func (hostState) update(ctx context.Context, c *call, olds, news props) (props, error) {
	// The command ran again itself: its output is the state. Otherwise repair what refresh found.
	if !same(olds["recorded"], news["recorded"]) || olds.str("live") != "degraded" {
		return news.with(props{"stdout": news["recorded"], "live": "ok", "drift": ""}), nil
	}
	stdout, _, err := shell(ctx, c, news.str("repair"), news.str("dir"))
	if err != nil {
		return nil, err
	}
	return news.with(props{"stdout": stdout, "live": "ok", "drift": ""}), nil
}

func (hostState) delete(context.Context, *call, props) error { return nil }
