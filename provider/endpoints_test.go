package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// podsOf decodes a pod list as kubectl prints it.
func podsOf(t *testing.T, text string) podList {
	t.Helper()
	var pods podList
	if err := json.Unmarshal([]byte(text), &pods); err != nil {
		t.Fatal(err)
	}
	return pods
}

// pod is one pod of `kubectl get pods -o json`; status and metadata as given.
func pod(node, hostIP string, extra map[string]any) map[string]any {
	p := map[string]any{
		"metadata": map[string]any{"name": "pcp-" + node},
		"spec":     map[string]any{"nodeName": node},
		"status":   map[string]any{"phase": "Running", "hostIP": hostIP, "conditions": []any{map[string]any{"type": "Ready", "status": "True"}}},
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func podListText(t *testing.T, items ...map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNodeEndpoints(t *testing.T) {
	const pmcd, pmproxy = "44321", "44322"
	ready := []any{map[string]any{"type": "Ready", "status": "True"}}
	for _, c := range []struct {
		name    string
		list    string
		pmcd    map[string]any
		pmproxy map[string]any
	}{
		{
			name: "one endpoint per node with a running, ready pod, on the node's address",
			list: podListText(t,
				pod("cp-1", "192.0.2.10", nil),
				pod("worker-1", "2001:db8::11", nil),
				pod("worker-2", "192.0.2.12", map[string]any{"status": map[string]any{"phase": "Running", "hostIP": "192.0.2.12", "conditions": []any{map[string]any{"type": "Ready", "status": "False"}}}}),
				pod("worker-3", "192.0.2.13", map[string]any{"status": map[string]any{"phase": "Pending", "hostIP": "192.0.2.13", "conditions": ready}}),
				pod("worker-4", "192.0.2.14", map[string]any{"metadata": map[string]any{"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
			),
			pmcd:    map[string]any{"cp-1": "192.0.2.10:" + pmcd, "worker-1": "[2001:db8::11]:" + pmcd},
			pmproxy: map[string]any{"cp-1": "http://192.0.2.10:" + pmproxy, "worker-1": "http://[2001:db8::11]:" + pmproxy},
		},
		{name: "no pods, no endpoints", list: `{}`, pmcd: map[string]any{}, pmproxy: map[string]any{}},
		{name: "an empty list", list: `{"items":[]}`, pmcd: map[string]any{}, pmproxy: map[string]any{}},
		{
			name: "a pod not scheduled yet, or without an address, is skipped",
			list: podListText(t,
				pod("", "192.0.2.1", nil),
				pod("worker-5", "", nil),
				pod("worker-6", "192.0.2.6", map[string]any{"spec": map[string]any{}}),
			),
			pmcd: map[string]any{}, pmproxy: map[string]any{},
		},
		{
			name: "ready only with a Ready condition that is True, among others",
			list: podListText(t,
				pod("a", "192.0.2.1", map[string]any{"status": map[string]any{"phase": "Running", "hostIP": "192.0.2.1", "conditions": []any{
					map[string]any{"type": "Initialized", "status": "True"},
					map[string]any{"type": "Ready", "status": "True"},
					map[string]any{"type": "ContainersReady", "status": "False"},
				}}}),
				pod("b", "192.0.2.2", map[string]any{"status": map[string]any{"phase": "Running", "hostIP": "192.0.2.2", "conditions": []any{
					map[string]any{"type": "ContainersReady", "status": "True"},
				}}}),
				pod("c", "192.0.2.3", map[string]any{"status": map[string]any{"phase": "Running", "hostIP": "192.0.2.3"}}),
				pod("d", "192.0.2.4", map[string]any{"status": map[string]any{"phase": "Succeeded", "hostIP": "192.0.2.4", "conditions": ready}}),
			),
			pmcd:    map[string]any{"a": "192.0.2.1:" + pmcd},
			pmproxy: map[string]any{"a": "http://192.0.2.1:" + pmproxy},
		},
		{
			name: "a node with a pod going and a pod coming: the ready one",
			list: podListText(t,
				pod("n", "192.0.2.7", map[string]any{"metadata": map[string]any{"name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
				pod("n", "192.0.2.7", nil),
			),
			pmcd:    map[string]any{"n": "192.0.2.7:" + pmcd},
			pmproxy: map[string]any{"n": "http://192.0.2.7:" + pmproxy},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := nodeEndpoints(podsOf(t, c.list), pmcd, pmproxy)
			want := props{"pmcdEndpoints": c.pmcd, "pmproxyUrls": c.pmproxy}
			if !same(map[string]any(got), map[string]any(want)) {
				t.Errorf("nodeEndpoints =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// standInKubectl puts a kubectl on PATH that records its arguments in DIR/args and prints DIR/pods.json.
func standInKubectl(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	if script == "" {
		script = fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %q\ncat %q\n", filepath.Join(dir, "args"), filepath.Join(dir, "pods.json"))
	}
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

// The DaemonSetEndpoints kind against a stand-in kubectl (the real cluster is test/integration/k8s.test.ts).
func TestDaemonSetEndpointsAgainstAStandIn(t *testing.T) {
	ctx := context.Background()
	dir := standInKubectl(t, "")
	write := func(text string) {
		if err := os.WriteFile(filepath.Join(dir, "pods.json"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(podListText(t, pod("node-a", "192.0.2.1", nil), pod("node-b", "192.0.2.2", nil)))
	inputs := props{
		"context": "pe7-ctx", "kubeconfig": "/tmp/pe7-kubeconfig", "namespace": "pe7-pcp", "selector": "a=b,c=d",
		"pmcdPort": float64(44321), "pmproxyPort": float64(44322), "revision": "uid/1", "timeoutSeconds": float64(5),
	}
	k := daemonSetEndpoints{}
	c := &call{log: func(string) {}}

	id, outs, err := k.create(ctx, c, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if id != "pe7-ctx/pe7-pcp/a=b,c=d" {
		t.Errorf("id %q", id)
	}
	want := inputs.with(props{
		"pmcdEndpoints": map[string]any{"node-a": "192.0.2.1:44321", "node-b": "192.0.2.2:44321"},
		"pmproxyUrls":   map[string]any{"node-a": "http://192.0.2.1:44322", "node-b": "http://192.0.2.2:44322"},
	})
	if !same(map[string]any(outs), map[string]any(want)) {
		t.Errorf("create outs:\n%v\nwant\n%v", outs, want)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.Fields(string(args)); strings.Join(got, " ") != "--context pe7-ctx --kubeconfig /tmp/pe7-kubeconfig --namespace pe7-pcp get pods --selector a=b,c=d --output json" {
		t.Errorf("kubectl %v", got)
	}

	// refresh: a node left.
	write(podListText(t, pod("node-b", "192.0.2.2", nil)))
	gotID, read, err := k.read(ctx, c, id, outs)
	if err != nil || gotID != id || !same(read["pmcdEndpoints"], map[string]any{"node-b": "192.0.2.2:44321"}) {
		t.Errorf("read: %q %v %v", gotID, read, err)
	}

	// A new rollout (revision) is a change; the same inputs are not.
	if d, _ := k.diff(ctx, c, outs, inputs); d.changes || len(d.changed) != 0 {
		t.Errorf("diff of the same inputs: %+v", d)
	}
	if d, _ := k.diff(ctx, c, outs, inputs.with(props{"revision": "uid/2", "selector": "x=y"})); !d.changes || strings.Join(d.changed, ",") != "revision,selector" || len(d.replaces) != 0 {
		t.Errorf("diff of a new revision: %+v", d)
	}
	updated, err := k.update(ctx, c, outs, inputs.with(props{"revision": "uid/2"}))
	if err != nil || updated.str("revision") != "uid/2" || !same(updated["pmproxyUrls"], map[string]any{"node-b": "http://192.0.2.2:44322"}) {
		t.Errorf("update: %v %v", updated, err)
	}
	if err := k.delete(ctx, c, outs); err != nil {
		t.Error(err)
	}

	// No kubeconfig: the flag is left out.
	if _, _, err := k.create(ctx, c, inputs.with(props{"kubeconfig": ""})); err != nil {
		t.Fatal(err)
	}
	args, _ = os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.Fields(string(args)); strings.Join(got, " ") != "--context pe7-ctx --namespace pe7-pcp get pods --selector a=b,c=d --output json" {
		t.Errorf("kubectl %v", got)
	}

	// kubectl's pod list spans many lines: all of stdout is the JSON.
	var pretty strings.Builder
	enc := json.NewEncoder(&pretty)
	enc.SetIndent("", "    ")
	_ = enc.Encode(map[string]any{"items": []any{pod("node-c", "192.0.2.3", nil)}})
	write(pretty.String())
	if _, outs, err := k.create(ctx, c, inputs); err != nil || !same(outs["pmcdEndpoints"], map[string]any{"node-c": "192.0.2.3:44321"}) {
		t.Errorf("a multi-line pod list: %v %v", outs, err)
	}

	write("Unable to connect to the server")
	_, _, err = k.create(ctx, c, inputs)
	if err == nil || err.Error() != "kubectl --context pe7-ctx --kubeconfig /tmp/pe7-kubeconfig --namespace pe7-pcp get pods --selector a=b,c=d --output json: expected a JSON pod list on stdout, got: Unable to connect to the server" {
		t.Errorf("non-JSON error: %v", err)
	}
}

func TestDaemonSetEndpointsKubectlFails(t *testing.T) {
	inputs := props{"context": "pe7-ctx", "kubeconfig": "", "namespace": "pe7-pcp", "selector": "a=b", "pmcdPort": float64(1), "pmproxyPort": float64(2), "timeoutSeconds": float64(5)}
	c := &call{log: func(string) {}}

	t.Run("an error that names the command and kubectl's message", func(t *testing.T) {
		standInKubectl(t, "#!/bin/sh\necho 'error: context \"pe7-ctx\" does not exist' >&2\nexit 1\n")
		_, _, err := daemonSetEndpoints{}.create(context.Background(), c, inputs)
		if err == nil || !regexp.MustCompile(`^kubectl --context pe7-ctx .* failed \(exit 1\):\nerror: context "pe7-ctx" does not exist$`).MatchString(err.Error()) {
			t.Errorf("error: %v", err)
		}
		if _, _, err := (daemonSetEndpoints{}).read(context.Background(), c, "id", inputs); err == nil {
			t.Error("read: no error")
		}
	})

	t.Run("a kubectl that hangs is ended after timeoutSeconds", func(t *testing.T) {
		standInKubectl(t, "#!/bin/sh\necho 'waiting for the API server' >&2\nexec sleep 30\n")
		_, _, err := daemonSetEndpoints{}.create(context.Background(), c, inputs.with(props{"timeoutSeconds": 0.3}))
		if err == nil || err.Error() != "kubectl --context pe7-ctx --namespace pe7-pcp get pods --selector a=b --output json failed (signal SIGTERM):\nwaiting for the API server" {
			t.Errorf("error: %v", err)
		}
	})
}
