package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sh runs /bin/sh -c SCRIPT with run.
func sh(t *testing.T, script string, o runOptions) (string, string, error) {
	t.Helper()
	return run(context.Background(), "/bin/sh", []string{"-c", script}, o)
}

// lines collects what run echoes.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) log(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, line)
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

func TestRunOutput(t *testing.T) {
	for _, c := range []struct {
		name, script, stdout, stderr string
	}{
		{"stdout and stderr without the final newline", "echo out; echo err >&2", "out", "err"},
		{"only one final newline goes", `printf 'a\n\n'; printf 'e\n\n' >&2`, "a\n", "e\n"},
		{"no final newline: kept as is", "printf 'a'; printf 'e' >&2", "a", "e"},
		{"several lines", "echo 1; echo 2; echo x >&2; echo y >&2", "1\n2", "x\ny"},
		{"nothing", "true", "", ""},
		{"leading and inner blanks are kept", `printf '  a \n'`, "  a ", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := sh(t, c.script, runOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if stdout != c.stdout || stderr != c.stderr {
				t.Errorf("got (%q, %q), want (%q, %q)", stdout, stderr, c.stdout, c.stderr)
			}
		})
	}
}

func TestRunInDir(t *testing.T) {
	dir := t.TempDir()
	stdout, _, err := run(context.Background(), "pwd", nil, runOptions{dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(dir)
	if got, _ := filepath.EvalSymlinks(stdout); got != want {
		t.Errorf("pwd = %q, want %q", stdout, dir)
	}
	cwd, _ := os.Getwd()
	stdout, _, err = run(context.Background(), "pwd", nil, runOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stdout != cwd {
		t.Errorf("without dir: pwd = %q, want the plugin's %q", stdout, cwd)
	}
}

func TestRunFailures(t *testing.T) {
	for _, c := range []struct {
		name    string
		file    string
		args    []string
		o       runOptions
		want    string
		prefix  bool
		maxTime time.Duration
	}{
		{
			name: "names the command, its exit status and the tail of its stderr",
			file: "/bin/sh", args: []string{"-c", "for i in $(seq 1 50); do echo line$i >&2; done; exit 3"},
			o:    runOptions{label: "the test command", tailLines: 2},
			want: "the test command failed (exit 3):\nline49\nline50",
		},
		{
			name: "the tail is 40 lines by default",
			file: "/bin/sh", args: []string{"-c", "for i in $(seq 1 50); do echo line$i >&2; done; exit 1"},
			o:    runOptions{label: "forty"},
			want: "forty failed (exit 1):\n" + seqLines(11, 50),
		},
		{
			name: "the label defaults to the command line; a signal is named",
			file: "/bin/sh", args: []string{"-c", "kill -TERM $$"},
			want: "/bin/sh -c kill -TERM $$ failed (signal SIGTERM)",
		},
		{
			name: "no stderr: no colon, no tail",
			file: "/bin/sh", args: []string{"-c", "exit 7"},
			o:    runOptions{label: "quiet"},
			want: "quiet failed (exit 7)",
		},
		{
			name: "a blank stderr is no tail",
			file: "/bin/sh", args: []string{"-c", "echo '  ' >&2; exit 1"},
			o:    runOptions{label: "blank"},
			want: "blank failed (exit 1)",
		},
		{
			name: "the tail is trimmed of surrounding blank lines",
			file: "/bin/sh", args: []string{"-c", `printf '\n\nwhy\n\n' >&2; exit 2`},
			o:    runOptions{label: "trimmed"},
			want: "trimmed failed (exit 2):\nwhy",
		},
		{
			name: "SIGKILL is named",
			file: "/bin/sh", args: []string{"-c", "kill -KILL $$"},
			o:    runOptions{label: "killed"},
			want: "killed failed (signal SIGKILL)",
		},
		{
			name: "a timeout ends the command with SIGTERM",
			file: "sleep", args: []string{"5"},
			o:    runOptions{timeout: 200 * time.Millisecond},
			want: "sleep 5 failed (signal SIGTERM)", maxTime: 3 * time.Second,
		},
		{
			name: "a timeout keeps what the command said",
			file: "/bin/sh", args: []string{"-c", "echo waiting for the cluster >&2; exec sleep 5"},
			o:    runOptions{label: "kubectl get pods", timeout: 200 * time.Millisecond},
			want: "kubectl get pods failed (signal SIGTERM):\nwaiting for the cluster", maxTime: 3 * time.Second,
		},
		{
			name: "a command that cannot start",
			file: "/nonexistent/tool",
			want: "/nonexistent/tool: cannot run /nonexistent/tool: ", prefix: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := run(context.Background(), c.file, c.args, c.o)
			if err == nil {
				t.Fatal("no error")
			}
			if c.prefix && !strings.HasPrefix(err.Error(), c.want) || !c.prefix && err.Error() != c.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, c.want)
			}
			if c.maxTime > 0 && time.Since(start) > c.maxTime {
				t.Errorf("took %v, more than %v", time.Since(start), c.maxTime)
			}
		})
	}
}

func seqLines(from, to int) string {
	var l []string
	for i := from; i <= to; i++ {
		l = append(l, "line"+itoa(i))
	}
	return strings.Join(l, "\n")
}

func itoa(i int) string { return plainText(float64(i)) }

func TestRunCannotStartWrapsTheCause(t *testing.T) {
	_, _, err := run(context.Background(), "/nonexistent/tool", nil, runOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap os.ErrNotExist", err)
	}
}

func TestRunReturnsOutputOnFailure(t *testing.T) {
	stdout, stderr, err := sh(t, "echo partial; echo oops >&2; exit 1", runOptions{label: "x"})
	if err == nil || stdout != "partial" || stderr != "oops" {
		t.Errorf("got (%q, %q, %v)", stdout, stderr, err)
	}
}

func TestRunEcho(t *testing.T) {
	// A line split across two writes, and a last line without a newline.
	script := `printf 'one\ntw' >&2; sleep 0.1; printf 'o\nthree' >&2; echo stdout-is-not-echoed`
	for _, c := range []struct {
		name string
		echo bool
		want []string
	}{
		{"whole lines only", true, []string{"one", "two", "three"}},
		{"quiet without echo", false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l lines
			stdout, stderr, err := sh(t, script, runOptions{echo: c.echo, log: l.log})
			if err != nil {
				t.Fatal(err)
			}
			if got := l.all(); strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
				t.Errorf("echoed %q, want %q", got, c.want)
			}
			if stdout != "stdout-is-not-echoed" || stderr != "one\ntwo\nthree" {
				t.Errorf("got (%q, %q)", stdout, stderr)
			}
		})
	}
	t.Run("echo without a log is quiet", func(t *testing.T) {
		if _, _, err := sh(t, "echo x >&2", runOptions{echo: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a failing command's lines are echoed too", func(t *testing.T) {
		var l lines
		_, _, err := sh(t, "echo before the end >&2; exit 1", runOptions{echo: true, log: l.log, label: "f"})
		if err == nil || strings.Join(l.all(), "|") != "before the end" {
			t.Errorf("echoed %q, error %v", l.all(), err)
		}
	})
}

// Lines reach the log while the command runs, not when it ends: the command
// waits for a file that the log makes on seeing the first line.
func TestRunEchoesAsLinesCome(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "seen")
	var l lines
	logAndMark := func(line string) {
		l.log(line)
		if line == "first" {
			_ = os.WriteFile(flag, nil, 0o600)
		}
	}
	script := `echo first >&2; i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 500 ] && exit 9; sleep 0.01; done; echo second >&2`
	_, _, err := run(context.Background(), "/bin/sh", []string{"-c", script, "sh", flag}, runOptions{echo: true, log: logAndMark, label: "streaming"})
	if err != nil {
		t.Fatalf("the first line did not reach the log before the command ended: %v", err)
	}
	if got := strings.Join(l.all(), "|"); got != "first|second" {
		t.Errorf("echoed %q", got)
	}
}

func TestTailOf(t *testing.T) {
	for _, c := range []struct {
		name  string
		text  string
		lines int
		want  string
	}{
		{"fewer lines than asked", "a\nb", 5, "a\nb"},
		{"the last lines", "a\nb\nc\nd", 2, "c\nd"},
		{"exactly as many", "a\nb", 2, "a\nb"},
		{"trimmed first", "\n\na\nb\n\n", 1, "b"},
		{"empty", "", 3, ""},
		{"0 means 40", seqLines(1, 45), 0, seqLines(6, 45)},
		{"negative means 40", seqLines(1, 41), -1, seqLines(2, 41)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tailOf(c.text, c.lines); got != c.want {
				t.Errorf("tailOf(%q, %d) = %q, want %q", c.text, c.lines, got, c.want)
			}
		})
	}
}

func TestLastJSONLine(t *testing.T) {
	for _, c := range []struct {
		name, stdout string
		want         any
	}{
		{"the last line", "progress\n{\"a\":1}\n", map[string]any{"a": float64(1)}},
		{"surrounding blanks", "\n  {\"ok\":true}  \n\n", map[string]any{"ok": true}},
		{"one line", `{"pid":4242,"accel":null}`, map[string]any{"pid": float64(4242), "accel": nil}},
		{"any JSON value", "noise\n[1,2]", []any{float64(1), float64(2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got any
			if err := lastJSONLine(c.stdout, "x", &got); err != nil {
				t.Fatal(err)
			}
			if !same(got, c.want) {
				t.Errorf("got %#v, want %#v", got, c.want)
			}
		})
	}

	long := strings.Repeat("y", 500)
	for _, c := range []struct {
		name, stdout, want string
	}{
		{"says what it expected and what came", "not json", "net.sh status: expected one JSON line on stdout, got: not json"},
		{"JSON before the last line does not count", "{\"a\":1}\ndone", "net.sh status: expected one JSON line on stdout, got: {\"a\":1}\ndone"},
		{"empty", "", "net.sh status: expected one JSON line on stdout, got: "},
		{"at most 400 characters of it", long, "net.sh status: expected one JSON line on stdout, got: " + long[:400]},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got any
			err := lastJSONLine(c.stdout, "net.sh status", &got)
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}

	t.Run("decodes into a struct", func(t *testing.T) {
		var s vmStatus
		if err := lastJSONLine(`{"running":true,"pid":5151,"startedAt":"2026-01-02T00:00:00Z","extra":1}`, "x", &s); err != nil {
			t.Fatal(err)
		}
		if !s.Running || s.PID == nil || *s.PID != 5151 || s.StartedAt == nil || *s.StartedAt != "2026-01-02T00:00:00Z" {
			t.Errorf("got %+v", s)
		}
	})
}

func TestRunJSON(t *testing.T) {
	var got map[string]any
	if err := runJSON(context.Background(), "/bin/sh", []string{"-c", `echo noise; echo progress >&2; echo '{"ok":true}'`}, runOptions{}, &got); err != nil {
		t.Fatal(err)
	}
	if !same(got, map[string]any{"ok": true}) {
		t.Errorf("got %v", got)
	}

	err := runJSON(context.Background(), "echo", []string{"hello"}, runOptions{label: "greeter"}, &got)
	if err == nil || err.Error() != "greeter: expected one JSON line on stdout, got: hello" {
		t.Errorf("error %v", err)
	}
	// Without a label, the command line names it, in both kinds of failure.
	err = runJSON(context.Background(), "echo", []string{"hello"}, runOptions{}, &got)
	if err == nil || err.Error() != "echo hello: expected one JSON line on stdout, got: hello" {
		t.Errorf("error %v", err)
	}
	err = runJSON(context.Background(), "/bin/sh", []string{"-c", "echo broken >&2; exit 1"}, runOptions{}, &got)
	if err == nil || err.Error() != "/bin/sh -c echo broken >&2; exit 1 failed (exit 1):\nbroken" {
		t.Errorf("error %v", err)
	}
}

func TestProjectPaths(t *testing.T) {
	moved := t.TempDir()
	gone := filepath.Join(moved, "old-checkout")
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("projectWorkDir: the recorded project dir while it exists, else the plugin's own", func(t *testing.T) {
		if got := projectWorkDir(moved); got != moved {
			t.Errorf("existing: %q", got)
		}
		if got := projectWorkDir(""); got != "" {
			t.Errorf("none: %q", got)
		}
		// "" is exec's "the plugin's working directory".
		if got := projectWorkDir(gone); got != "" {
			t.Errorf("gone: %q, want \"\" (the plugin's working directory)", got)
		}
		stdout, _, err := run(context.Background(), "pwd", nil, runOptions{dir: projectWorkDir(gone)})
		if err != nil || stdout != cwd {
			t.Errorf("a command for a moved checkout runs in %q (%v), want %q", stdout, err, cwd)
		}
	})

	t.Run("absoluteStateDir: resolved where the script runs", func(t *testing.T) {
		for _, c := range []struct {
			stateDir, dir, want string
		}{
			{".pcp-eval-state/ci/net", moved, filepath.Join(moved, ".pcp-eval-state/ci/net")},
			{".pcp-eval-state/ci/net", gone, filepath.Join(cwd, ".pcp-eval-state/ci/net")},
			{".pcp-eval-state/ci/net", "", filepath.Join(cwd, ".pcp-eval-state/ci/net")},
			{"/srv/net", moved, "/srv/net"},
			{"/srv/../srv/net/", moved, "/srv/net"},
			{"./a/../net", moved, filepath.Join(moved, "net")},
		} {
			if got := absoluteStateDir(c.stateDir, c.dir); got != c.want {
				t.Errorf("absoluteStateDir(%q, %q) = %q, want %q", c.stateDir, c.dir, got, c.want)
			}
		}
	})
}

func TestSameStateDir(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b props
		want bool
	}{
		{"the same text", props{"stateDir": ".pcp-eval-state/ci"}, props{"stateDir": ".pcp-eval-state/ci"}, true},
		{"the checkout moved: the same relative text is the same place",
			props{"dir": "/a/p", "stateDir": ".pcp-eval-state/ci"}, props{"dir": "/b/p", "stateDir": ".pcp-eval-state/ci"}, true},
		{"recorded absolute, now relative to the same project",
			props{"stateDir": "/a/p/.pcp-eval-state/ci"}, props{"dir": "/a/p", "stateDir": ".pcp-eval-state/ci"}, true},
		{"and the other way round",
			props{"dir": "/a/p", "stateDir": ".pcp-eval-state/ci"}, props{"dir": "/a/p", "stateDir": "/a/p/.pcp-eval-state/ci/"}, true},
		{"two names in one project", props{"dir": "/a/p", "stateDir": "state-1"}, props{"dir": "/a/p", "stateDir": "state-2"}, false},
		{"an absolute place elsewhere", props{"stateDir": "/srv/one"}, props{"dir": "/a/p", "stateDir": ".pcp-eval-state/ci"}, false},
		{"no dir resolves against /", props{"stateDir": "srv/one"}, props{"stateDir": "/srv/one"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := sameStateDir(c.a, c.b); got != c.want {
				t.Errorf("sameStateDir(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
			}
			if got := sameStateDir(c.b, c.a); got != c.want {
				t.Errorf("not symmetric: sameStateDir(%v, %v) = %v", c.b, c.a, got)
			}
		})
	}
}
