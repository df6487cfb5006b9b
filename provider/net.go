package main

import (
	"context"
	"fmt"
	"slices"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// netBridge: the bridge with its gateway address, forwarding and NAT (an
// nftables table of its own), made and removed by host/net.sh, which records
// what it made under stateDir. read runs net.sh status: a bridge lost to a
// reboot or a flushed table reads as "degraded", and the next up runs
// bridge-up again, which repairs it. components/tapBridge.ts declares the inputs.
type netBridge struct{}

// netTap: one TAP device on the bridge, owned by the user that runs the VMs.
type netTap struct{}

// netStatus is `net.sh status`'s line, as far as read uses it.
type netStatus struct {
	Recorded bool `json:"recorded"`
	Bridge   struct {
		Exists    bool     `json:"exists"`
		Ours      bool     `json:"ours"`
		Up        *bool    `json:"up"`
		Addresses []string `json:"addresses"`
	} `json:"bridge"`
	Nft struct {
		Ours *bool `json:"ours"`
	} `json:"nft"`
	IPForward struct {
		Value string `json:"value"`
	} `json:"ipForward"`
	Taps []struct {
		Name     string  `json:"name"`
		Recorded bool    `json:"recorded"`
		Exists   bool    `json:"exists"`
		Ours     bool    `json:"ours"`
		Master   *string `json:"master"`
		Up       *bool   `json:"up"`
	} `json:"taps"`
}

// netSh runs `bash net.sh VERB --state-dir DIR ARGS... [--sudo]` and decodes its line; its error lines name the setting and the fix.
func netSh(ctx context.Context, c *call, in props, verb string, args []string, into any) error {
	// An absolute state dir: with --sudo, net.sh hands it to its root helper, which refuses a relative one.
	full := append([]string{in.str("scriptPath"), verb, "--state-dir", absoluteStateDir(in.str("stateDir"), in.str("dir"))}, args...)
	if in.boolean("sudo") {
		full = append(full, "--sudo")
	}
	return runJSON(ctx, "bash", full, runOptions{dir: projectWorkDir(in.str("dir")), label: "net.sh " + verb, echo: verb != "status", log: c.log}, into)
}

func bridgeUp(ctx context.Context, c *call, in props) error {
	var out map[string]any
	return netSh(ctx, c, in, "bridge-up", []string{"--bridge", in.str("bridge"), "--gateway-cidr", in.str("gatewayCidr"), "--nft-table", in.str("nftTable")}, &out)
}

func tapUp(ctx context.Context, c *call, in props) error {
	multiQueue := "off"
	if in.boolean("multiQueue") {
		multiQueue = "on"
	}
	var out map[string]any
	return netSh(ctx, c, in, "tap-up", []string{"--bridge", in.str("bridge"), "--tap", in.str("tap"), "--owner", in.str("owner"), "--multi-queue", multiQueue}, &out)
}

// netDiff: a changed place replaces (deleting first: the names are the host's), anything else, or a degraded device, updates.
func netDiff(olds, news props, replaceKeys, updateKeys []string) diffResult {
	d := diffResult{deleteBeforeReplace: true}
	for _, k := range replaceKeys {
		if (k == "stateDir" && !sameStateDir(olds, news)) || (k != "stateDir" && !same(olds[k], news[k])) {
			d.replaces = append(d.replaces, k)
		}
	}
	d.changed = append(d.changed, d.replaces...)
	for _, k := range updateKeys {
		if !same(olds[k], news[k]) {
			d.changed = append(d.changed, k)
		}
	}
	d.changes = len(d.changed) > 0 || olds.str("live") != "ok"
	return d
}

func (netBridge) check(news props) []*pulumirpc.CheckFailure {
	return textInputs(news, []string{"scriptPath", "stateDir", "bridge", "gatewayCidr", "nftTable"}, nil, []string{"dir"})
}

func (netBridge) diff(_ context.Context, _ *call, olds, news props) (diffResult, error) {
	return netDiff(olds, news, []string{"stateDir", "bridge", "nftTable"}, []string{"scriptPath", "gatewayCidr", "sudo", "dir"}), nil
}

func (netBridge) create(ctx context.Context, c *call, in props) (string, props, error) {
	if err := bridgeUp(ctx, c, in); err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("%s#%s", in.str("stateDir"), in.str("bridge")), in.with(props{"live": "ok"}), nil
}

func (netBridge) read(ctx context.Context, c *call, id string, state props) (string, props, error) {
	var s netStatus
	if err := netSh(ctx, c, state, "status", []string{"--bridge", state.str("bridge"), "--nft-table", state.str("nftTable")}, &s); err != nil {
		return "", nil, err
	}
	// Nothing of ours left and nothing recorded (taken down by hand): gone. A
	// same-named device that is not ours: gone too; the next up refuses it with a clear error.
	if (!s.Recorded && !s.Bridge.Exists) || (s.Bridge.Exists && !s.Bridge.Ours) {
		return "", nil, nil
	}
	healthy := s.Bridge.Ours && s.Bridge.Up != nil && *s.Bridge.Up && slices.Contains(s.Bridge.Addresses, state.str("gatewayCidr")) &&
		(s.Nft.Ours == nil || *s.Nft.Ours) && s.IPForward.Value == "1"
	return id, state.with(props{"live": liveWord(healthy)}), nil
}

func (netBridge) update(ctx context.Context, c *call, _, news props) (props, error) {
	if err := bridgeUp(ctx, c, news); err != nil {
		return nil, err
	}
	return news.with(props{"live": "ok"}), nil
}

func (netBridge) delete(ctx context.Context, c *call, state props) error {
	var out map[string]any
	return netSh(ctx, c, state, "bridge-down", nil, &out)
}

func (netTap) check(news props) []*pulumirpc.CheckFailure {
	return textInputs(news, []string{"scriptPath", "stateDir", "bridge", "tap", "owner"}, nil, []string{"dir"})
}

func (netTap) diff(_ context.Context, _ *call, olds, news props) (diffResult, error) {
	return netDiff(olds, news, []string{"stateDir", "bridge", "tap"}, []string{"scriptPath", "owner", "multiQueue", "sudo", "dir"}), nil
}

func (netTap) create(ctx context.Context, c *call, in props) (string, props, error) {
	if err := tapUp(ctx, c, in); err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("%s#%s", in.str("stateDir"), in.str("tap")), in.with(props{"live": "ok"}), nil
}

func (netTap) read(ctx context.Context, c *call, id string, state props) (string, props, error) {
	var s netStatus
	if err := netSh(ctx, c, state, "status", []string{"--tap", state.str("tap")}, &s); err != nil {
		return "", nil, err
	}
	for _, t := range s.Taps {
		if t.Name != state.str("tap") {
			continue
		}
		if (!t.Recorded && !t.Exists) || (t.Exists && !t.Ours) {
			return "", nil, nil
		}
		healthy := t.Ours && t.Master != nil && *t.Master == state.str("bridge") && t.Up != nil && *t.Up
		return id, state.with(props{"live": liveWord(healthy)}), nil
	}
	return "", nil, nil
}

func (netTap) update(ctx context.Context, c *call, _, news props) (props, error) {
	// tap-up makes the TAP again when its owner or multi-queue flag changed.
	if err := tapUp(ctx, c, news); err != nil {
		return nil, err
	}
	return news.with(props{"live": "ok"}), nil
}

func (netTap) delete(ctx context.Context, c *call, state props) error {
	var out map[string]any
	return netSh(ctx, c, state, "tap-down", []string{"--tap", state.str("tap")}, &out)
}

func liveWord(healthy bool) string {
	if healthy {
		return "ok"
	}
	return "degraded"
}
