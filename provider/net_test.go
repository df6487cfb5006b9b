package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetDiff(t *testing.T) {
	replaceKeys, updateKeys := []string{"stateDir", "bridge", "tap"}, []string{"scriptPath", "owner", "multiQueue", "sudo", "dir"}
	base := props{
		"scriptPath": "host/net.sh", "stateDir": ".pcp-eval-state/ci/net", "dir": "/a/p", "bridge": "pe-br0", "tap": "pe-tap0",
		"owner": "ci", "multiQueue": false, "sudo": true, "live": "ok",
	}
	for _, c := range []struct {
		name     string
		olds     props
		news     props
		replaces string
		changed  string
		changes  bool
	}{
		{"nothing changed", base, base, "", "", false},
		{"a degraded device updates with nothing changed", base.with(props{"live": "degraded"}), base, "", "", true},
		{"a state without live (never read ok) updates", base.with(props{"live": nil}), base, "", "", true},
		{"another name replaces", base, base.with(props{"tap": "pe-tap1"}), "tap", "tap", true},
		{"another bridge replaces", base, base.with(props{"bridge": "pe-br1"}), "bridge", "bridge", true},
		{"another state dir replaces", base, base.with(props{"stateDir": ".pcp-eval-state/other/net"}), "stateDir", "stateDir", true},
		{"the checkout moved: an update", base, base.with(props{"dir": "/b/p"}), "", "dir", true},
		{"the same state dir written absolute: no change of place",
			base, base.with(props{"stateDir": "/a/p/.pcp-eval-state/ci/net"}), "", "", false},
		{"owner, multi-queue and sudo update", base, base.with(props{"owner": "root", "multiQueue": true, "sudo": false}), "", "owner,multiQueue,sudo", true},
		{"replaces come first in the changed keys", base, base.with(props{"scriptPath": "x/net.sh", "tap": "t"}), "tap", "tap,scriptPath", true},
		{"keys the kind does not name are not compared", base, base.with(props{"other": "x"}), "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := netDiff(c.olds, c.news, replaceKeys, updateKeys)
			if strings.Join(d.replaces, ",") != c.replaces || strings.Join(d.changed, ",") != c.changed || d.changes != c.changes || !d.deleteBeforeReplace {
				t.Errorf("netDiff = %+v, want replaces %q changed %q changes %v (delete before replace)", d, c.replaces, c.changed, c.changes)
			}
		})
	}
}

func TestNetKindDiffs(t *testing.T) {
	bridge := props{"scriptPath": "s", "stateDir": "d", "bridge": "br", "gatewayCidr": "10.0.0.1/24", "nftTable": "t", "sudo": false, "dir": "/p", "live": "ok"}
	d, _ := netBridge{}.diff(context.Background(), nil, bridge, bridge.with(props{"nftTable": "t2", "gatewayCidr": "10.0.1.1/24"}))
	if strings.Join(d.replaces, ",") != "nftTable" || strings.Join(d.changed, ",") != "nftTable,gatewayCidr" {
		t.Errorf("bridge diff: %+v", d)
	}
	tap := props{"scriptPath": "s", "stateDir": "d", "bridge": "br", "tap": "tp", "owner": "o", "multiQueue": false, "live": "ok"}
	d, _ = netTap{}.diff(context.Background(), nil, tap, tap.with(props{"bridge": "br2", "multiQueue": true}))
	if strings.Join(d.replaces, ",") != "bridge" || strings.Join(d.changed, ",") != "bridge,multiQueue" {
		t.Errorf("tap diff: %+v", d)
	}
}

// standInNet is a net.sh that records its arguments and answers status with DIR/status.json, the other verbs with {}.
func standInNet(t *testing.T) (string, func(any)) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/usr/bin/env bash
dir=$(dirname "$0")
printf "%s\n" "$*" >>"$dir/calls"
echo "net.sh: $1" >&2
if [[ $1 == status ]]; then cat "$dir/status.json"; else echo '{}'; fi
`
	if err := os.WriteFile(filepath.Join(dir, "net.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, func(v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func lastCall(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return l[len(l)-1]
}

func TestNetBridgeAgainstAStandIn(t *testing.T) {
	ctx := context.Background()
	dir, status := standInNet(t)
	var l lines
	c := &call{log: l.log}
	in := props{"scriptPath": "net.sh", "stateDir": "state/net", "dir": dir, "bridge": "pe-br0", "gatewayCidr": "10.77.0.1/24", "nftTable": "pe_nat", "sudo": true}
	abs := filepath.Join(dir, "state/net")

	id, outs, err := netBridge{}.create(ctx, c, in)
	if err != nil {
		t.Fatal(err)
	}
	if id != "state/net#pe-br0" || outs.str("live") != "ok" {
		t.Errorf("create: %q %v", id, outs)
	}
	// The state dir absolute (for the root helper), the script relative to dir, --sudo last.
	if got := lastCall(t, dir); got != "bridge-up --state-dir "+abs+" --bridge pe-br0 --gateway-cidr 10.77.0.1/24 --nft-table pe_nat --sudo" {
		t.Errorf("net.sh %s", got)
	}
	if strings.Join(l.all(), "|") != "net.sh: bridge-up" {
		t.Errorf("echoed %q", l.all())
	}

	healthy := map[string]any{
		"recorded":  true,
		"bridge":    map[string]any{"exists": true, "ours": true, "up": true, "addresses": []any{"10.77.0.1/24"}},
		"nft":       map[string]any{"exists": true, "ours": true},
		"ipForward": map[string]any{"value": "1"},
		"taps":      []any{},
	}
	with := func(key string, value any) map[string]any {
		m := map[string]any{}
		for k, v := range healthy {
			m[k] = v
		}
		m[key] = value
		return m
	}
	for _, c2 := range []struct {
		name   string
		status map[string]any
		live   string // "" : gone
	}{
		{"all there: ok", healthy, "ok"},
		{"no table of ours to check (nft.ours null): ok", with("nft", map[string]any{"exists": nil, "ours": nil}), "ok"},
		{"the bridge down", with("bridge", map[string]any{"exists": true, "ours": true, "up": false, "addresses": []any{"10.77.0.1/24"}}), "degraded"},
		{"the bridge up unknown", with("bridge", map[string]any{"exists": true, "ours": true, "addresses": []any{"10.77.0.1/24"}}), "degraded"},
		{"the gateway address gone", with("bridge", map[string]any{"exists": true, "ours": true, "up": true, "addresses": []any{}}), "degraded"},
		{"the table flushed", with("nft", map[string]any{"exists": false, "ours": false}), "degraded"},
		{"forwarding off", with("ipForward", map[string]any{"value": "0"}), "degraded"},
		{"recorded, the bridge lost to a reboot", with("bridge", map[string]any{"exists": false, "ours": false}), "degraded"},
		{"nothing recorded and nothing there: gone", map[string]any{"recorded": false, "bridge": map[string]any{"exists": false, "ours": false}, "nft": map[string]any{}, "ipForward": map[string]any{"value": "1"}, "taps": []any{}}, ""},
		{"a same-named bridge not ours: gone", with("bridge", map[string]any{"exists": true, "ours": false, "up": true}), ""},
	} {
		t.Run(c2.name, func(t *testing.T) {
			status(c2.status)
			n := len(l.all())
			gotID, got, err := netBridge{}.read(ctx, c, id, outs)
			if err != nil {
				t.Fatal(err)
			}
			if c2.live == "" {
				if gotID != "" {
					t.Errorf("read: %q %v, want gone", gotID, got)
				}
			} else if gotID != id || got.str("live") != c2.live {
				t.Errorf("read: %q %v, want live %q", gotID, got, c2.live)
			}
			if got := lastCall(t, dir); got != "status --state-dir "+abs+" --bridge pe-br0 --nft-table pe_nat --sudo" {
				t.Errorf("net.sh %s", got)
			}
			if len(l.all()) != n {
				t.Errorf("status is echoed: %q", l.all()[n:])
			}
		})
	}

	updated, err := netBridge{}.update(ctx, c, outs.with(props{"live": "degraded"}), in.with(props{"sudo": false}))
	if err != nil || updated.str("live") != "ok" {
		t.Errorf("update: %v %v", updated, err)
	}
	if got := lastCall(t, dir); got != "bridge-up --state-dir "+abs+" --bridge pe-br0 --gateway-cidr 10.77.0.1/24 --nft-table pe_nat" {
		t.Errorf("net.sh %s", got)
	}
	if err := (netBridge{}).delete(ctx, c, outs); err != nil {
		t.Fatal(err)
	}
	if got := lastCall(t, dir); got != "bridge-down --state-dir "+abs+" --sudo" {
		t.Errorf("net.sh %s", got)
	}
}

func TestNetTapAgainstAStandIn(t *testing.T) {
	ctx := context.Background()
	dir, status := standInNet(t)
	c := &call{log: func(string) {}}
	in := props{"scriptPath": filepath.Join(dir, "net.sh"), "stateDir": filepath.Join(dir, "net"), "bridge": "pe-br0", "tap": "pe-tap0", "owner": "ci", "multiQueue": true}

	id, outs, err := netTap{}.create(ctx, c, in)
	if err != nil {
		t.Fatal(err)
	}
	if id != filepath.Join(dir, "net")+"#pe-tap0" || outs.str("live") != "ok" {
		t.Errorf("create: %q %v", id, outs)
	}
	if got := lastCall(t, dir); got != fmt.Sprintf("tap-up --state-dir %s/net --bridge pe-br0 --tap pe-tap0 --owner ci --multi-queue on", dir) {
		t.Errorf("net.sh %s", got)
	}
	if _, err := (netTap{}).update(ctx, c, outs, in.with(props{"multiQueue": false})); err != nil {
		t.Fatal(err)
	}
	if got := lastCall(t, dir); !strings.HasSuffix(got, "--owner ci --multi-queue off") {
		t.Errorf("net.sh %s", got)
	}

	tap := func(fields map[string]any) map[string]any {
		m := map[string]any{"name": "pe-tap0", "recorded": true, "exists": true, "ours": true, "master": "pe-br0", "up": true}
		for k, v := range fields {
			m[k] = v
		}
		return map[string]any{"recorded": true, "bridge": map[string]any{}, "nft": map[string]any{}, "ipForward": map[string]any{}, "taps": []any{
			map[string]any{"name": "pe-tap9", "recorded": false, "exists": false, "ours": false},
			m,
		}}
	}
	for _, c2 := range []struct {
		name   string
		status map[string]any
		live   string
	}{
		{"on the bridge and up: ok", tap(nil), "ok"},
		{"detached", tap(map[string]any{"master": nil}), "degraded"},
		{"on another bridge", tap(map[string]any{"master": "br-other"}), "degraded"},
		{"down", tap(map[string]any{"up": false}), "degraded"},
		{"recorded, lost to a reboot", tap(map[string]any{"exists": false, "ours": false, "master": nil, "up": nil}), "degraded"},
		{"nothing recorded and nothing there: gone", tap(map[string]any{"recorded": false, "exists": false, "ours": false}), ""},
		{"a same-named device not ours: gone", tap(map[string]any{"ours": false}), ""},
		{"not in the status at all: gone", map[string]any{"recorded": true, "taps": []any{}}, ""},
	} {
		t.Run(c2.name, func(t *testing.T) {
			status(c2.status)
			gotID, got, err := netTap{}.read(ctx, c, id, outs)
			if err != nil {
				t.Fatal(err)
			}
			if c2.live == "" && gotID != "" || c2.live != "" && (gotID != id || got.str("live") != c2.live) {
				t.Errorf("read: %q %v, want live %q", gotID, got, c2.live)
			}
			if got := lastCall(t, dir); got != fmt.Sprintf("status --state-dir %s/net --tap pe-tap0", dir) {
				t.Errorf("net.sh %s", got)
			}
		})
	}
	if err := (netTap{}).delete(ctx, c, outs); err != nil {
		t.Fatal(err)
	}
	if got := lastCall(t, dir); got != fmt.Sprintf("tap-down --state-dir %s/net --tap pe-tap0", dir) {
		t.Errorf("net.sh %s", got)
	}
}

func TestNetShFailure(t *testing.T) {
	dir := t.TempDir()
	script := "#!/usr/bin/env bash\necho \"net.sh: bridge pe-br0 exists but is not ours; pick another pcp-eval:bridge\" >&2\nexit 2\n"
	if err := os.WriteFile(filepath.Join(dir, "net.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := netBridge{}.create(context.Background(), &call{log: func(string) {}}, props{"scriptPath": filepath.Join(dir, "net.sh"), "stateDir": dir, "bridge": "pe-br0"})
	if err == nil || err.Error() != "net.sh bridge-up failed (exit 2):\nnet.sh: bridge pe-br0 exists but is not ours; pick another pcp-eval:bridge" {
		t.Errorf("error: %v", err)
	}
}
