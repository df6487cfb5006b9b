package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runOptions: how one host command runs.
type runOptions struct {
	// Working directory ("" inherits the plugin's).
	dir string
	// How errors name the command.
	label string
	// Pass stderr on, line by line, to log as it comes.
	echo bool
	// Kill the command (SIGTERM) after this long; 0: no limit.
	timeout time.Duration
	// How many last lines of stderr an error carries; 0: 40.
	tailLines int
	// Where echoed lines go.
	log func(line string)
}

// run runs FILE ARGS and returns its stdout and stderr (each without the final
// newline) when it exits 0; otherwise an error naming the command, its exit
// status or signal, and the tail of its stderr.
func run(ctx context.Context, file string, args []string, o runOptions) (string, string, error) {
	label := o.label
	if label == "" {
		label = strings.Join(append([]string{file}, args...), " ")
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, file, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.Dir = o.dir
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return "", "", fmt.Errorf("%s: cannot run %s: %w", label, file, err)
	}
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("%s: cannot run %s: %w", label, file, err)
	}
	var stderr strings.Builder
	reader := bufio.NewReader(errPipe)
	for {
		line, readErr := reader.ReadString('\n')
		if line != "" {
			stderr.WriteString(line)
			// Whole lines only, so that resources working side by side do not interleave mid-line.
			if o.echo && o.log != nil {
				o.log(strings.TrimSuffix(line, "\n"))
			}
		}
		if readErr != nil {
			if !errors.Is(readErr, io.EOF) {
				stderr.WriteString(readErr.Error())
			}
			break
		}
	}
	waitErr := cmd.Wait()
	out := strings.TrimSuffix(stdout.String(), "\n")
	errText := strings.TrimSuffix(stderr.String(), "\n")
	if waitErr == nil {
		return out, errText, nil
	}
	status := waitErr.Error()
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = "signal " + signalName(ws.Signal())
		} else {
			status = fmt.Sprintf("exit %d", exitErr.ExitCode())
		}
	}
	tail := tailOf(errText, o.tailLines)
	if tail != "" {
		return out, errText, fmt.Errorf("%s failed (%s):\n%s", label, status, tail)
	}
	return out, errText, fmt.Errorf("%s failed (%s)", label, status)
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

func tailOf(text string, lines int) string {
	if lines <= 0 {
		lines = 40
	}
	all := strings.Split(strings.TrimSpace(text), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// lastJSONLine decodes the host scripts' contract: the last line of stdout is one JSON value.
func lastJSONLine(stdout, label string, into any) error {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), into); err != nil {
		head := stdout
		if len(head) > 400 {
			head = head[:400]
		}
		return fmt.Errorf("%s: expected one JSON line on stdout, got: %s", label, head)
	}
	return nil
}

// runJSON: run, then lastJSONLine of its stdout.
func runJSON(ctx context.Context, file string, args []string, o runOptions, into any) error {
	if o.label == "" {
		o.label = strings.Join(append([]string{file}, args...), " ")
	}
	stdout, _, err := run(ctx, file, args, o)
	if err != nil {
		return err
	}
	return lastJSONLine(stdout, o.label, into)
}

// projectWorkDir is the directory a host script runs in: the recorded project
// directory, or the plugin's own when that one is gone. A checkout moved before
// any `up` recorded its new place (a destroy or refresh right after the move)
// still finds its scripts and state: the engine starts the plugin in the
// project directory, and scripts and state are recorded relative to it.
func projectWorkDir(dir string) string {
	if dir == "" {
		return ""
	}
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

// absoluteStateDir resolves a state directory against the directory the script
// runs in (net.sh's root helper refuses a relative one).
func absoluteStateDir(stateDir, dir string) string {
	if filepath.IsAbs(stateDir) {
		return filepath.Clean(stateDir)
	}
	base := projectWorkDir(dir)
	if base == "" {
		base, _ = os.Getwd()
	}
	return filepath.Join(base, stateDir)
}

// sameStateDir: two recorded inputs name the same state directory, as the same
// text or as the same place once each relative path is resolved against its
// own project directory (a moved checkout is not a new place).
func sameStateDir(a, b props) bool {
	if a.str("stateDir") == b.str("stateDir") {
		return true
	}
	resolve := func(p props) string {
		dir := p.str("dir")
		if dir == "" {
			dir = "/"
		}
		if filepath.IsAbs(p.str("stateDir")) {
			return filepath.Clean(p.str("stateDir"))
		}
		return filepath.Join(dir, p.str("stateDir"))
	}
	return resolve(a) == resolve(b)
}
