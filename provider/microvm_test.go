package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// vmInputs: a MicroVmProcess's inputs as the engine sends them (numbers are float64).
func vmInputs() props {
	return props{
		"name":       "eval",
		"runner":     "/nix/store/abc-microvm-eval",
		"stateDir":   "/srv/state/vms",
		"scriptPath": "/srv/project/host/vm.sh",
		"ports":      []any{float64(31022), float64(31321), float64(31510), float64(31511)},
		"probes":     []any{"serial=console:127.0.0.1:31510", "services=tcp:127.0.0.1:31321", "services=http://127.0.0.1:31322/pmapi/context"},
		"timeouts":   map[string]any{"start": float64(5), "services": float64(60), "shutdown": float64(30), "exit": float64(60)},
	}
}

func words(s string) []string { return strings.Fields(s) }

func TestVmShArgs(t *testing.T) {
	in := vmInputs()
	for _, c := range []struct {
		name  string
		in    props
		verb  string
		purge bool
		want  []string
	}{
		{
			// Timeouts in name order ("start" sorts as itself), whatever order the engine's map had.
			name: "start: runner, ports and probes in order, timeouts with start as the process phase",
			in:   in, verb: "start",
			want: words("start --name eval --state-dir /srv/state/vms --runner /nix/store/abc-microvm-eval" +
				" --port 31022 --port 31321 --port 31510 --port 31511" +
				" --probe serial=console:127.0.0.1:31510 --probe services=tcp:127.0.0.1:31321 --probe services=http://127.0.0.1:31322/pmapi/context" +
				" --timeout exit=60 --timeout services=60 --timeout shutdown=30 --timeout process=5"),
		},
		{
			name: "start: a fractional timeout as written",
			in:   in.with(props{"ports": nil, "probes": nil, "timeouts": map[string]any{"start": 0.5}}), verb: "start",
			want: words("start --name eval --state-dir /srv/state/vms --runner /nix/store/abc-microvm-eval --timeout process=0.5"),
		},
		{
			name: "stop: only the shutdown and exit timeouts",
			in:   in, verb: "stop",
			want: words("stop --name eval --state-dir /srv/state/vms --shutdown-timeout 30 --exit-timeout 60"),
		},
		{
			name: "stop without timeouts",
			in:   in.with(props{"timeouts": map[string]any{}}), verb: "stop",
			want: words("stop --name eval --state-dir /srv/state/vms"),
		},
		{
			name: "stop with one of them",
			in:   in.with(props{"timeouts": map[string]any{"exit": float64(9), "services": float64(1)}}), verb: "stop",
			want: words("stop --name eval --state-dir /srv/state/vms --exit-timeout 9"),
		},
		{
			name: "stop that purges (destroy)",
			in:   in, verb: "stop", purge: true,
			want: words("stop --name eval --state-dir /srv/state/vms --shutdown-timeout 30 --exit-timeout 60 --purge"),
		},
		{
			name: "status: only name and state dir",
			in:   in, verb: "status",
			want: words("status --name eval --state-dir /srv/state/vms"),
		},
		{
			name: "status ignores purge",
			in:   in, verb: "status", purge: true,
			want: words("status --name eval --state-dir /srv/state/vms"),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := vmShArgs(c.in, c.verb, c.purge)
			if strings.Join(got, " ") != strings.Join(c.want, " ") || len(got) != len(c.want) {
				t.Errorf("vmShArgs =\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

func TestVmShArgsAccel(t *testing.T) {
	// The accelerator flags come right after the runner (args 7 on).
	after := func(extra props) string {
		args := vmShArgs(vmInputs().with(extra), "start", false)
		return strings.Join(args[7:min(11, len(args))], " ")
	}
	for _, c := range []struct {
		name  string
		extra props
		want  string
	}{
		{"auto passes the verdict file", props{"accel": "auto", "kvmVerdict": "/c/kvm-probe"}, "--accel auto --kvm-verdict /c/kvm-probe"},
		{"another setting does not", props{"accel": "tcg", "kvmVerdict": "/c/kvm-probe"}, "--accel tcg --port 31022"},
		{"auto without a verdict file", props{"accel": "auto"}, "--accel auto --port 31022"},
		{"auto with a verdict file not known yet", props{"accel": "auto", "kvmVerdict": unknown}, "--accel auto --port 31022"},
		{"no setting: the runner's default", props{}, "--port 31022 --port 31321"},
		{"a setting not known yet: none", props{"accel": unknown, "kvmVerdict": "/c/kvm-probe"}, "--port 31022 --port 31321"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := after(c.extra); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
	for _, verb := range []string{"stop", "status"} {
		args := strings.Join(vmShArgs(vmInputs().with(props{"accel": "auto", "kvmVerdict": "/v"}), verb, false), " ")
		if strings.Contains(args, "--accel") || strings.Contains(args, "--kvm-verdict") {
			t.Errorf("%s passes the accelerator: %s", verb, args)
		}
	}
}

const probeReason = `must be PHASE=tcp:HOST:PORT, PHASE=console:HOST:PORT or PHASE=http://HOST:PORT/PATH (PHASE not "process")`

func TestMicroVmCheck(t *testing.T) {
	in := vmInputs()
	for _, c := range []struct {
		name string
		news props
		want []string
	}{
		{"accepts good inputs", in, nil},
		{
			name: "names every bad field",
			news: in.with(props{
				"name":     "../eval",
				"stateDir": "relative/dir",
				"ports":    []any{float64(0), float64(31321), float64(31321)},
				"probes":   []any{"serial=udp:1", "process=tcp:127.0.0.1:1", "nophase"},
				"timeouts": map[string]any{"services": float64(-1)},
			}),
			want: []string{
				"name: '../eval': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)",
				"stateDir: 'relative/dir' must be an absolute path, or give dir to resolve it against",
				"ports[0]: 0 is not a TCP port (1-65535)",
				"ports: listed twice: 31321",
				"probes[0]: 'serial=udp:1' " + probeReason,
				"probes[1]: 'process=tcp:127.0.0.1:1' " + probeReason,
				"probes[2]: 'nophase' " + probeReason,
				"timeouts.services: -1 must be a positive number of seconds",
			},
		},
		{"does not judge values that are unknown during preview", in.with(props{"runner": unknown, "stateDir": unknown}), nil},
		{
			name: "nor unknown elements of lists and maps",
			news: in.with(props{"name": unknown, "ports": []any{unknown, unknown, float64(1)}, "probes": []any{unknown}, "timeouts": map[string]any{"services": unknown}}),
		},
		{"nor unknown lists", in.with(props{"ports": unknown, "probes": unknown, "timeouts": unknown}), nil},
		{"relative paths with dir to resolve them against", in.with(props{"dir": "/srv/project", "stateDir": ".pcp-eval-state/vms", "scriptPath": "host/vm.sh"}), nil},
		{"a dir not known yet resolves them too", in.with(props{"dir": unknown, "stateDir": "s", "scriptPath": "host/vm.sh"}), nil},
		{
			name: "a relative dir, and both paths relative without one",
			news: in.with(props{"stateDir": "s", "scriptPath": "host/vm.sh"}),
			want: []string{
				"stateDir: 's' must be an absolute path, or give dir to resolve it against",
				"scriptPath: 'host/vm.sh' must be an absolute path, or give dir to resolve it against",
			},
		},
		{"a relative dir", in.with(props{"dir": "project"}), []string{"dir: 'project' must be an absolute path"}},
		{"a blank runner", in.with(props{"runner": "  "}), []string{"runner: must be the runner's store path"}},
		{
			name: "names: 63 characters at most, no leading symbol",
			news: in.with(props{"name": strings.Repeat("a", 64)}),
			want: []string{"name: '" + strings.Repeat("a", 64) + "': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)"},
		},
		{"a 63-character name with symbols", in.with(props{"name": "a" + strings.Repeat("._-", 20) + "b9"}), nil},
		{"a name starting with a symbol", in.with(props{"name": "-x"}), []string{"name: '-x': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)"}},
		{
			name: "ports that are no TCP port",
			news: in.with(props{"ports": []any{float64(65536), 1.5, "80", float64(65535), float64(1)}}),
			want: []string{"ports[0]: 65536 is not a TCP port (1-65535)", "ports[1]: 1.5 is not a TCP port (1-65535)", "ports[2]: 80 is not a TCP port (1-65535)"},
		},
		{"each port listed twice once", in.with(props{"ports": []any{float64(2), float64(1), float64(2), float64(1), float64(2)}}), []string{"ports: listed twice: 2, 1"}},
		{"ports that are no list", in.with(props{"ports": "31022"}), []string{"ports: must be a list of TCP ports"}},
		{"probes that are no list", in.with(props{"probes": "a=tcp:h:1"}), []string{"probes: must be a list of PHASE=SPEC strings"}},
		{
			name: "probe specs",
			news: in.with(props{"probes": []any{"a=tcp:h:1", "b_1-x=console:127.0.0.1:2", "c=https://h/p", "d=tcp:h:port", "e=tcp:h:1:2", "1a=tcp:h:1", "f=http://", "g="}}),
			want: []string{
				"probes[3]: 'd=tcp:h:port' " + probeReason,
				"probes[4]: 'e=tcp:h:1:2' " + probeReason,
				"probes[5]: '1a=tcp:h:1' " + probeReason,
				"probes[6]: 'f=http://' " + probeReason,
				"probes[7]: 'g=' " + probeReason,
			},
		},
		{
			name: "timeouts: positive numbers, in phase order",
			news: in.with(props{"timeouts": map[string]any{"start": "5", "services": float64(0), "exit": true, "shutdown": 0.25}}),
			want: []string{
				"timeouts.exit: true must be a positive number of seconds",
				"timeouts.services: 0 must be a positive number of seconds",
				"timeouts.start: 5 must be a positive number of seconds",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := failureList(microVmProcess{}.check(c.news))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// standInVM is a vm.sh that records its arguments and answers from VERB.json, or fails with the file "fail".
type standInVM struct {
	t   *testing.T
	dir string
}

func newStandInVM(t *testing.T) *standInVM {
	dir := t.TempDir()
	script := `#!/usr/bin/env bash
dir=$(dirname "$0")
printf "%s\n" "$*" >>"$dir/calls"
if [[ -f $dir/fail ]]; then echo "vm eval: phase services: waiting" >&2; cat "$dir/fail" >&2; exit 1; fi
echo "vm eval: progress line" >&2
cat "$dir/$1.json"
`
	if err := os.WriteFile(filepath.Join(dir, "vm.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &standInVM{t, dir}
}

func (v *standInVM) write(file string, value any) {
	v.t.Helper()
	text, ok := value.(string)
	if !ok {
		b, err := json.Marshal(value)
		if err != nil {
			v.t.Fatal(err)
		}
		text = string(b)
	}
	if err := os.WriteFile(filepath.Join(v.dir, file), []byte(text+"\n"), 0o644); err != nil {
		v.t.Fatal(err)
	}
}

func (v *standInVM) remove(file string) {
	if err := os.Remove(filepath.Join(v.dir, file)); err != nil {
		v.t.Fatal(err)
	}
}

func (v *standInVM) calls() []string {
	b, err := os.ReadFile(filepath.Join(v.dir, "calls"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (v *standInVM) verbsSince(n int) []string {
	var verbs []string
	for _, c := range v.calls()[n:] {
		verbs = append(verbs, strings.Fields(c)[0])
	}
	return verbs
}

// The MicroVmProcess kind against a stand-in vm.sh (the real one and QEMU are in test/integration/vm.test.ts).
func TestMicroVmProcessAgainstAStandIn(t *testing.T) {
	ctx := context.Background()
	vm := newStandInVM(t)
	var l lines
	c := &call{log: l.log}
	inputs := vmInputs().with(props{"stateDir": vm.dir, "scriptPath": filepath.Join(vm.dir, "vm.sh")})
	vmDir := filepath.Join(vm.dir, "eval")
	state := inputs.with(props{"pid": float64(4242), "startedAt": "2026-01-01T00:00:00Z", "readyMs": float64(1234), "vmDir": vmDir})
	k := microVmProcess{}

	t.Run("create runs vm.sh start and returns the VM dir as id with pid, start time and readiness", func(t *testing.T) {
		vm.write("start.json", map[string]any{"name": "eval", "pid": 4242, "startedAt": "2026-01-01T00:00:00Z", "readyMs": 1234, "phases": map[string]any{}, "ports": []any{}, "stateDir": vmDir, "log": "x"})
		vm.write("status.json", map[string]any{"name": "eval", "running": false})
		id, outs, err := k.create(ctx, c, inputs)
		if err != nil {
			t.Fatal(err)
		}
		if id != vmDir || !same(map[string]any(outs), map[string]any(state)) {
			t.Errorf("create: %q\n%v\nwant\n%v", id, outs, state)
		}
		last := vm.calls()[len(vm.calls())-1]
		if !regexp.MustCompile(`^start --name eval --state-dir \S+ --runner /nix/store/abc-microvm-eval --port 31022`).MatchString(last) {
			t.Errorf("vm.sh %s", last)
		}
		// start's progress is shown, status's is not.
		if strings.Join(l.all(), "|") != "vm eval: progress line" {
			t.Errorf("echoed %q", l.all())
		}
	})

	t.Run("create records the accelerator vm.sh used", func(t *testing.T) {
		vm.write("start.json", map[string]any{"pid": 4242, "startedAt": "s", "readyMs": 1, "stateDir": vmDir, "accel": "kvm"})
		_, outs, err := k.create(ctx, c, inputs.with(props{"accel": "auto"}))
		if err != nil || outs.str("accelUsed") != "kvm" {
			t.Errorf("create: %v %v", outs, err)
		}
		vm.write("start.json", map[string]any{"pid": 4242, "startedAt": "s", "readyMs": 1, "stateDir": vmDir, "accel": nil})
		_, outs, err = k.create(ctx, c, inputs)
		if _, has := outs["accelUsed"]; err != nil || has {
			t.Errorf("create without accel: %v %v", outs, err)
		}
	})

	t.Run("create first stops a leftover VM of the same name (an interrupted up), then starts", func(t *testing.T) {
		vm.write("start.json", map[string]any{"pid": 4242, "startedAt": "2026-01-01T00:00:00Z", "readyMs": 1234, "stateDir": vmDir})
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 999})
		vm.write("stop.json", map[string]any{"name": "eval", "stopped": true, "how": "graceful"})
		n := len(vm.calls())
		if _, _, err := k.create(ctx, c, inputs); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(vm.verbsSince(n), " "); got != "status stop start" {
			t.Errorf("vm.sh verbs: %s", got)
		}
		// The leftover is stopped, not purged: its logs stay.
		if stop := vm.calls()[n+1]; strings.Contains(stop, "--purge") {
			t.Errorf("vm.sh %s", stop)
		}
		vm.remove("status.json")
	})

	t.Run("create fails with vm.sh's report", func(t *testing.T) {
		vm.write("fail", "vm.sh start eval: failed in phase 'services': timed out after 60.0 s; last probe error: ...\n--- VM log ---")
		defer vm.remove("fail")
		_, _, err := k.create(ctx, c, inputs)
		if err == nil || !regexp.MustCompile(`^vm\.sh start eval failed \(exit 1\):\n[\s\S]*failed in phase 'services'[\s\S]*--- VM log ---$`).MatchString(err.Error()) {
			t.Errorf("error: %v", err)
		}
	})

	t.Run("read keeps a running VM and reads a dead one as gone", func(t *testing.T) {
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 4242, "uptimeSeconds": 9, "startedAt": "2026-01-01T00:00:00Z", "ports": []any{}})
		id, got, err := k.read(ctx, c, vmDir, state)
		if err != nil || id != vmDir || !same(map[string]any(got), map[string]any(state)) {
			t.Errorf("read: %q %v %v", id, got, err)
		}
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 5151, "startedAt": "2026-01-02T00:00:00Z"})
		id, got, err = k.read(ctx, c, vmDir, state)
		want := state.with(props{"pid": float64(5151), "startedAt": "2026-01-02T00:00:00Z"})
		if err != nil || id != vmDir || !same(map[string]any(got), map[string]any(want)) {
			t.Errorf("read: %q %v %v", id, got, err)
		}
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 5151})
		if _, got, err = k.read(ctx, c, vmDir, state); err != nil || got.str("startedAt") != "2026-01-01T00:00:00Z" {
			t.Errorf("a status without startedAt keeps the recorded one: %v %v", got, err)
		}
		vm.write("status.json", map[string]any{"name": "eval", "running": false, "stale": true, "reason": "pid 4242 is gone"})
		if id, _, err = k.read(ctx, c, vmDir, state); err != nil || id != "" {
			t.Errorf("read of a dead VM: %q %v", id, err)
		}
	})

	type want struct {
		replaces string
		changes  bool
	}
	diff := func(t *testing.T, olds, news props, w want) {
		t.Helper()
		d, err := k.diff(ctx, c, olds, news)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(d.replaces, ",") != w.replaces || d.changes != w.changes || !d.deleteBeforeReplace {
			t.Errorf("diff = %+v, want replaces %q changes %v", d, w.replaces, w.changes)
		}
	}

	t.Run("diff replaces on runner, ports or a dead process; updates in place on probes and timeouts", func(t *testing.T) {
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 4242})
		diff(t, state, state, want{"", false})
		diff(t, state, state.with(props{"runner": "/nix/store/def-microvm-eval"}), want{"runner", true})
		diff(t, state, state.with(props{"ports": []any{float64(1), float64(2)}}), want{"ports", true})
		diff(t, state, state.with(props{"name": "other"}), want{"name", true})
		diff(t, state, state.with(props{"timeouts": map[string]any{"services": float64(90)}}), want{"", true})
		diff(t, state, state.with(props{"probes": []any{}}), want{"", true})
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 777})
		diff(t, state, state, want{"pid", true})
		vm.write("status.json", map[string]any{"name": "eval", "running": false})
		diff(t, state, state, want{"pid", true})
		// A replace already decided asks vm.sh nothing.
		n := len(vm.calls())
		diff(t, state, state.with(props{"runner": "/nix/store/def"}), want{"runner", true})
		if len(vm.calls()) != n {
			t.Errorf("vm.sh ran: %v", vm.calls()[n:])
		}
		// Inputs without a pid (nothing started yet) ask nothing either.
		diff(t, inputs, inputs, want{"", false})
		if len(vm.calls()) != n {
			t.Errorf("vm.sh ran: %v", vm.calls()[n:])
		}
	})

	t.Run("diff and read fail with vm.sh's message when the host cannot answer", func(t *testing.T) {
		vm.write("fail", "vm.sh: --state-dir: cannot read the VM's record")
		defer vm.remove("fail")
		pattern := regexp.MustCompile(`^vm\.sh status eval failed \(exit 1\):\n[\s\S]*cannot read the VM's record$`)
		if _, err := k.diff(ctx, c, state, state); err == nil || !pattern.MatchString(err.Error()) {
			t.Errorf("diff error: %v", err)
		}
		if _, _, err := k.read(ctx, c, vmDir, state); err == nil || !pattern.MatchString(err.Error()) {
			t.Errorf("read error: %v", err)
		}
	})

	t.Run("diff: a moved checkout or the same state dir written relative is an update, never a replace", func(t *testing.T) {
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 4242})
		relative := state.with(props{"dir": filepath.Dir(vm.dir), "stateDir": filepath.Base(vm.dir)})
		diff(t, state, relative, want{"", true})
		// The checkout moved (the old one is gone): the VM is asked for where it is now.
		elsewhere := t.TempDir()
		n := len(vm.calls())
		diff(t, relative.with(props{"dir": filepath.Join(elsewhere, "gone")}), relative.with(props{"dir": elsewhere}), want{"", true})
		if got := vm.verbsSince(n); strings.Join(got, " ") != "status" {
			t.Errorf("vm.sh verbs: %v", got)
		}
		diff(t, relative, relative.with(props{"stateDir": "other"}), want{"stateDir", true})
	})

	t.Run("the KVM verdict replaces nothing; a changed accelerator setting replaces with 'accel' as the reason", func(t *testing.T) {
		vm.write("status.json", map[string]any{"name": "eval", "running": true, "pid": 4242})
		auto := state.with(props{"accel": "auto", "kvmVerdict": "/cache/pcp-eval/kvm-probe"})
		diff(t, auto, auto, want{"", false})
		diff(t, auto, auto.with(props{"kvmVerdict": "/other/kvm-probe"}), want{"", true})
		diff(t, auto, auto.with(props{"accel": "tcg"}), want{"accel", true})
		// A state recorded before accel was an input: the verdict file is an update key; the accel it lacks replaces nothing.
		diff(t, state, auto, want{"", true})
		diff(t, state, state.with(props{"accel": "auto"}), want{"", false})
		// A setting not known yet (preview) replaces nothing.
		diff(t, auto, auto.with(props{"accel": unknown}), want{"", false})
	})

	t.Run("update keeps the running VM's outputs", func(t *testing.T) {
		olds := state.with(props{"accelUsed": "kvm"})
		news := inputs.with(props{"timeouts": map[string]any{"services": float64(90)}})
		n := len(vm.calls())
		got, err := k.update(ctx, c, olds, news)
		if err != nil {
			t.Fatal(err)
		}
		want := news.with(props{"pid": float64(4242), "startedAt": "2026-01-01T00:00:00Z", "readyMs": float64(1234), "vmDir": vmDir, "accelUsed": "kvm"})
		if !same(map[string]any(got), map[string]any(want)) {
			t.Errorf("update: %v", got)
		}
		if len(vm.calls()) != n {
			t.Errorf("update ran vm.sh: %v", vm.calls()[n:])
		}
	})

	t.Run("delete runs vm.sh stop with the shutdown and exit timeouts, purging the VM dir", func(t *testing.T) {
		vm.write("stop.json", map[string]any{"name": "eval", "stopped": true, "how": "graceful"})
		if err := k.delete(ctx, c, state); err != nil {
			t.Fatal(err)
		}
		last := vm.calls()[len(vm.calls())-1]
		if !regexp.MustCompile(`^stop --name eval --state-dir \S+ --shutdown-timeout 30 --exit-timeout 60 --purge$`).MatchString(last) {
			t.Errorf("vm.sh %s", last)
		}
		vm.write("fail", "vm.sh stop eval: pid 4242 did not exit")
		defer vm.remove("fail")
		if err := k.delete(ctx, c, state); err == nil || !strings.HasPrefix(err.Error(), "vm.sh stop eval failed (exit 1):\n") {
			t.Errorf("delete error: %v", err)
		}
	})
}
