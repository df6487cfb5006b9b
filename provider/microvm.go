package main

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// microVmProcess: the running QEMU process of one MicroVM, around host/vm.sh
// (start / status / stop). create returns when every readiness phase
// answered, vm.sh's progress lines shown as they come; read and diff ask
// vm.sh status, so a VM that died reads as gone (refresh) or plans its
// replacement (up, preview); delete stops it gracefully and removes its
// directory. components/microVmProcess.ts declares the inputs.
type microVmProcess struct{}

// vmStart is `vm.sh start`'s line.
type vmStart struct {
	PID       float64 `json:"pid"`
	StartedAt string  `json:"startedAt"`
	ReadyMs   float64 `json:"readyMs"`
	StateDir  string  `json:"stateDir"`
	Accel     *string `json:"accel"`
}

// vmStatus is `vm.sh status`'s line, as far as it is used.
type vmStatus struct {
	Running   bool     `json:"running"`
	PID       *float64 `json:"pid"`
	StartedAt *string  `json:"startedAt"`
}

// vmShArgs is the vm.sh command line after the script path for one verb; purge: a stop that also removes the VM's directory.
func vmShArgs(in props, verb string, purge bool) []string {
	args := []string{verb, "--name", in.str("name"), "--state-dir", in.str("stateDir")}
	timeouts := in.object("timeouts")
	phases := make([]string, 0, len(timeouts))
	for phase := range timeouts {
		phases = append(phases, phase)
	}
	sort.Strings(phases)
	switch verb {
	case "start":
		args = append(args, "--runner", in.str("runner"))
		if in.known("accel") {
			args = append(args, "--accel", in.str("accel"))
			if in.str("accel") == "auto" && in.known("kvmVerdict") {
				args = append(args, "--kvm-verdict", in.str("kvmVerdict"))
			}
		}
		for _, p := range in.list("ports") {
			args = append(args, "--port", plainText(p))
		}
		for _, p := range in.list("probes") {
			args = append(args, "--probe", plainText(p))
		}
		for _, phase := range phases {
			name := phase
			if name == "start" {
				name = "process"
			}
			args = append(args, "--timeout", name+"="+plainText(timeouts[phase]))
		}
	case "stop":
		if v, ok := timeouts["shutdown"]; ok {
			args = append(args, "--shutdown-timeout", plainText(v))
		}
		if v, ok := timeouts["exit"]; ok {
			args = append(args, "--exit-timeout", plainText(v))
		}
		if purge {
			args = append(args, "--purge")
		}
	}
	return args
}

// vmSh runs vm.sh and decodes its one JSON line; its failure report (the phase, the probe error, the VM's log tails) is the error.
func vmSh(ctx context.Context, c *call, in props, verb string, echo, purge bool, into any) error {
	return runJSON(ctx, "bash", append([]string{in.str("scriptPath")}, vmShArgs(in, verb, purge)...), runOptions{
		dir:       projectWorkDir(in.str("dir")),
		label:     fmt.Sprintf("vm.sh %s %s", verb, in.str("name")),
		echo:      echo,
		tailLines: 160,
		log:       c.log,
	}, into)
}

var (
	vmNamePattern    = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	probePattern     = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9_-]*)=(.*)$`)
	probeSpecPattern = regexp.MustCompile(`^(tcp:|console:)[^:]+:\d+$|^https?://.`)
)

// check judges the inputs; values still unknown (preview) are not judged.
func (microVmProcess) check(news props) []*pulumirpc.CheckFailure {
	var failures []*pulumirpc.CheckFailure
	fail := func(property, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: property, Reason: reason})
	}
	isKnown := func(v any) bool { return v != nil && v != unknown }
	if news.known("name") && !vmNamePattern.MatchString(plainText(news["name"])) {
		fail("name", fmt.Sprintf("'%s': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)", plainText(news["name"])))
	}
	if news.known("dir") && !strings.HasPrefix(plainText(news["dir"]), "/") {
		fail("dir", fmt.Sprintf("'%s' must be an absolute path", plainText(news["dir"])))
	}
	for _, key := range []string{"stateDir", "scriptPath"} {
		if _, hasDir := news["dir"]; news.known(key) && !strings.HasPrefix(plainText(news[key]), "/") && !hasDir {
			fail(key, fmt.Sprintf("'%s' must be an absolute path, or give dir to resolve it against", plainText(news[key])))
		}
	}
	if news.known("runner") && strings.TrimSpace(plainText(news["runner"])) == "" {
		fail("runner", "must be the runner's store path")
	}
	if news.known("ports") {
		ports, isList := news["ports"].([]any)
		if !isList {
			fail("ports", "must be a list of TCP ports")
		} else {
			var twice []string
			for i, p := range ports {
				if !isKnown(p) {
					continue
				}
				f, isNumber := p.(float64)
				if !isNumber || f != math.Trunc(f) || f < 1 || f > 65535 {
					fail(fmt.Sprintf("ports[%d]", i), fmt.Sprintf("%s is not a TCP port (1-65535)", plainText(p)))
				}
				for j := 0; j < i; j++ {
					if same(ports[j], p) && !slices.Contains(twice, plainText(p)) {
						twice = append(twice, plainText(p))
					}
				}
			}
			if len(twice) > 0 {
				fail("ports", "listed twice: "+strings.Join(twice, ", "))
			}
		}
	}
	if news.known("probes") {
		probes, isList := news["probes"].([]any)
		if !isList {
			fail("probes", "must be a list of PHASE=SPEC strings")
		} else {
			for i, p := range probes {
				if !isKnown(p) {
					continue
				}
				m := probePattern.FindStringSubmatch(plainText(p))
				if m == nil || m[1] == "process" || !probeSpecPattern.MatchString(m[2]) {
					fail(fmt.Sprintf("probes[%d]", i), fmt.Sprintf(`'%s' must be PHASE=tcp:HOST:PORT, PHASE=console:HOST:PORT or PHASE=http://HOST:PORT/PATH (PHASE not "process")`, plainText(p)))
				}
			}
		}
	}
	if news.known("timeouts") {
		timeouts := news.object("timeouts")
		phases := make([]string, 0, len(timeouts))
		for phase := range timeouts {
			phases = append(phases, phase)
		}
		sort.Strings(phases)
		for _, phase := range phases {
			v := timeouts[phase]
			if f, isNumber := v.(float64); isKnown(v) && (!isNumber || f <= 0 || math.IsInf(f, 0)) {
				fail("timeouts."+phase, fmt.Sprintf("%s must be a positive number of seconds", plainText(v)))
			}
		}
	}
	return failures
}

func (microVmProcess) diff(ctx context.Context, c *call, olds, news props) (diffResult, error) {
	d := diffResult{deleteBeforeReplace: true}
	for _, k := range []string{"name", "runner", "stateDir", "ports"} {
		changed := !same(olds[k], news[k])
		if k == "stateDir" {
			// Written differently (absolute before, project-relative now) but naming the same place: no move.
			changed = !sameStateDir(olds, news)
		}
		if changed {
			d.replaces = append(d.replaces, k)
		}
	}
	// The accelerator setting (never the KVM verdict, read at start); a state from before accel was an input has none.
	if olds.known("accel") && news.known("accel") && olds.str("accel") != news.str("accel") {
		d.replaces = append(d.replaces, "accel")
	}
	// Without a refresh, up still notices a VM whose process died. A host error
	// (vm.sh missing, a broken state dir) fails the diff with its message.
	if oldPID, hasPID := olds.number("pid"); len(d.replaces) == 0 && hasPID {
		// Asked where the VM is now: the same VM, but a moved checkout's old place is gone.
		where := olds.with(props{"dir": news.strOr("dir", olds.str("dir")), "scriptPath": news.strOr("scriptPath", olds.str("scriptPath"))})
		var status vmStatus
		if err := vmSh(ctx, c, where, "status", false, false, &status); err != nil {
			return d, err
		}
		if !status.Running || status.PID == nil || *status.PID != oldPID {
			d.replaces = append(d.replaces, "pid")
		}
	}
	d.changed = append(d.changed, d.replaces...)
	for _, k := range []string{"scriptPath", "probes", "timeouts", "dir", "kvmVerdict"} {
		if !same(olds[k], news[k]) {
			d.changed = append(d.changed, k)
		}
	}
	d.changes = len(d.changed) > 0
	return d, nil
}

func (microVmProcess) create(ctx context.Context, c *call, in props) (string, props, error) {
	// A VM of this name in our state dir that runs although the state has no
	// resource for it was started by an interrupted up: stop it, so the next up
	// converges instead of failing on "already running". (A status that fails
	// is left to start, which reports the cause.)
	var leftover vmStatus
	if err := vmSh(ctx, c, in, "status", false, false, &leftover); err == nil && leftover.Running {
		var stopped map[string]any
		if err := vmSh(ctx, c, in, "stop", true, false, &stopped); err != nil {
			return "", nil, err
		}
	}
	var started vmStart
	if err := vmSh(ctx, c, in, "start", true, false, &started); err != nil {
		return "", nil, err
	}
	outs := in.with(props{"pid": started.PID, "startedAt": started.StartedAt, "readyMs": started.ReadyMs, "vmDir": started.StateDir})
	if started.Accel != nil && *started.Accel != "" {
		outs["accelUsed"] = *started.Accel
	}
	return started.StateDir, outs, nil
}

func (microVmProcess) read(ctx context.Context, c *call, id string, state props) (string, props, error) {
	var status vmStatus
	if err := vmSh(ctx, c, state, "status", false, false, &status); err != nil {
		return "", nil, err
	}
	// A VM that died is gone: refresh drops it and the next up starts it again.
	if !status.Running || status.PID == nil {
		return "", nil, nil
	}
	startedAt := state["startedAt"]
	if status.StartedAt != nil {
		startedAt = *status.StartedAt
	}
	return id, state.with(props{"pid": *status.PID, "startedAt": startedAt}), nil
}

func (microVmProcess) update(_ context.Context, _ *call, olds, news props) (props, error) {
	// Only probes, timeouts, the script path or the project's place changed: the running VM stays as it is.
	kept := props{}
	for _, k := range []string{"pid", "startedAt", "readyMs", "vmDir", "accelUsed"} {
		if v, ok := olds[k]; ok {
			kept[k] = v
		}
	}
	return news.with(kept), nil
}

func (microVmProcess) delete(ctx context.Context, c *call, state props) error {
	// Destroy leaves nothing of the VM: its logs and directory go too.
	var stopped map[string]any
	return vmSh(ctx, c, state, "stop", true, true, &stopped)
}
