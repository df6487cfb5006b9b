package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestTypeOf(t *testing.T) {
	for _, c := range []struct {
		urn, want string
	}{
		{"urn:pulumi:dev::pcp-eval::pcp-eval:index:HostCommand::ssh-key", "pcp-eval:index:HostCommand"},
		{"urn:pulumi:dev::pcp-eval::pcp-eval:Environment$pcp-eval:index:NetTap::tap-eval", "pcp-eval:index:NetTap"},
		{"urn:pulumi:dev::pcp-eval::a:b:C$d:e:F$pcp-eval:index:MicroVmProcess::vm", "pcp-eval:index:MicroVmProcess"},
		// A name may hold "::".
		{"urn:pulumi:dev::pcp-eval::pcp-eval:index:HostState::a::b", "pcp-eval:index:HostState"},
		{"urn:pulumi:dev::pcp-eval::pulumi-nodejs:dynamic/pcp-eval:HostCommand::old", "pulumi-nodejs:dynamic/pcp-eval:HostCommand"},
		{"urn:pulumi:dev::pcp-eval", ""},
		{"", ""},
	} {
		if got := typeOf(c.urn); got != c.want {
			t.Errorf("typeOf(%q) = %q, want %q", c.urn, got, c.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	p := newProvider()
	for _, name := range []string{"HostCommand", "HostState", "MicroVmProcess", "NetBridge", "NetTap", "DaemonSetEndpoints"} {
		if _, err := p.kindOf("", "pcp-eval:index:"+name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The type, when the engine sends none, is the URN's.
	if k, err := p.kindOf("urn:pulumi:dev::pcp-eval::pcp-eval:index:NetTap::tap", ""); err != nil {
		t.Error(err)
	} else if _, ok := k.(netTap); !ok {
		t.Errorf("kindOf by URN: %T", k)
	}
	// A given type wins over the URN's.
	if k, err := p.kindOf("urn:pulumi:dev::pcp-eval::pcp-eval:index:NetTap::tap", "pcp-eval:index:NetBridge"); err != nil {
		t.Error(err)
	} else if _, ok := k.(netBridge); !ok {
		t.Errorf("kindOf by type: %T", k)
	}
	const served = "pcp-eval:index:DaemonSetEndpoints, pcp-eval:index:HostCommand, pcp-eval:index:HostState, pcp-eval:index:MicroVmProcess, pcp-eval:index:NetBridge, pcp-eval:index:NetTap"
	for _, c := range []struct {
		urn, typ, want string
	}{
		{"", "pcp-eval:index:Nope", `pulumi-resource-pcp-eval: unknown resource type "pcp-eval:index:Nope" (this plugin serves ` + served + ")"},
		{"urn:pulumi:dev::p::pulumi-nodejs:dynamic/pcp-eval:HostCommand::x", "", `pulumi-resource-pcp-eval: unknown resource type "pulumi-nodejs:dynamic/pcp-eval:HostCommand" (this plugin serves ` + served + ")"},
		{"garbage", "", `pulumi-resource-pcp-eval: unknown resource type "" (this plugin serves ` + served + ")"},
	} {
		if _, err := p.kindOf(c.urn, c.typ); err == nil || err.Error() != c.want {
			t.Errorf("kindOf(%q, %q): %v\nwant %s", c.urn, c.typ, err, c.want)
		}
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const hostCommandURN = "urn:pulumi:dev::pcp-eval::pcp-eval:index:HostCommand::cmd"

// The gRPC methods, called in process: each finds its kind and maps its answer.
func TestProviderMethods(t *testing.T) {
	ctx := context.Background()
	p := newProvider()
	dir := t.TempDir()

	t.Run("every method refuses an unknown type", func(t *testing.T) {
		urn := "urn:pulumi:dev::p::pcp-eval:index:Nope::x"
		errs := []error{}
		_, err := p.Check(ctx, &pulumirpc.CheckRequest{Urn: urn})
		errs = append(errs, err)
		_, err = p.Diff(ctx, &pulumirpc.DiffRequest{Urn: urn})
		errs = append(errs, err)
		_, err = p.Create(ctx, &pulumirpc.CreateRequest{Urn: urn})
		errs = append(errs, err)
		_, err = p.Read(ctx, &pulumirpc.ReadRequest{Urn: urn})
		errs = append(errs, err)
		_, err = p.Update(ctx, &pulumirpc.UpdateRequest{Urn: urn})
		errs = append(errs, err)
		_, err = p.Delete(ctx, &pulumirpc.DeleteRequest{Urn: urn})
		errs = append(errs, err)
		for i, err := range errs {
			if err == nil || !strings.Contains(err.Error(), `unknown resource type "pcp-eval:index:Nope"`) {
				t.Errorf("method %d: %v", i, err)
			}
		}
	})

	t.Run("check drops the dynamic provider's serialized text and reports failures", func(t *testing.T) {
		res, err := p.Check(ctx, &pulumirpc.CheckRequest{Urn: hostCommandURN, News: mustStruct(t, map[string]any{"create": "", "dir": dir, dynamicProviderKey: "exports.handler=..."})})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.GetInputs().GetFields()[dynamicProviderKey]; ok || res.GetInputs().GetFields()["dir"].GetStringValue() != dir {
			t.Errorf("inputs: %v", res.GetInputs())
		}
		if got := failureList(res.GetFailures()); strings.Join(got, "|") != "create: must not be empty" {
			t.Errorf("failures: %v", got)
		}
	})

	t.Run("diff: none, some, replaces", func(t *testing.T) {
		olds := map[string]any{"create": "a", "dir": dir, "triggers": []any{"1"}, "live": "ok", dynamicProviderKey: "old"}
		for _, c := range []struct {
			name     string
			news     map[string]any
			changes  pulumirpc.DiffResponse_DiffChanges
			replaces string
			diffs    string
		}{
			{"no change (the serialized provider is no input)", map[string]any{"create": "a", "dir": dir, "triggers": []any{"1"}}, pulumirpc.DiffResponse_DIFF_NONE, "", ""},
			{"an update", map[string]any{"create": "b", "dir": dir, "triggers": []any{"1"}}, pulumirpc.DiffResponse_DIFF_SOME, "", "create"},
			{"a replace", map[string]any{"create": "a", "dir": dir, "triggers": []any{"2"}}, pulumirpc.DiffResponse_DIFF_SOME, "triggers", "triggers"},
		} {
			t.Run(c.name, func(t *testing.T) {
				res, err := p.Diff(ctx, &pulumirpc.DiffRequest{Urn: hostCommandURN, Olds: mustStruct(t, olds), News: mustStruct(t, c.news)})
				if err != nil {
					t.Fatal(err)
				}
				if res.GetChanges() != c.changes || strings.Join(res.GetReplaces(), ",") != c.replaces || strings.Join(res.GetDiffs(), ",") != c.diffs || !res.GetDeleteBeforeReplace() {
					t.Errorf("diff: %v", res)
				}
			})
		}
	})

	t.Run("create, read, update, delete", func(t *testing.T) {
		in := map[string]any{"create": "echo made; touch f", "delete": "rm f", "check": `echo made`, "dir": dir}
		created, err := p.Create(ctx, &pulumirpc.CreateRequest{Urn: hostCommandURN, Properties: mustStruct(t, in)})
		if err != nil {
			t.Fatal(err)
		}
		if !uuidPattern.MatchString(created.GetId()) || created.GetProperties().GetFields()["stdout"].GetStringValue() != "made" {
			t.Errorf("create: %v", created)
		}
		read, err := p.Read(ctx, &pulumirpc.ReadRequest{Urn: hostCommandURN, Id: created.GetId(), Properties: created.GetProperties(),
			Inputs: mustStruct(t, map[string]any{"create": in["create"], "dir": dir, dynamicProviderKey: "old"})})
		if err != nil {
			t.Fatal(err)
		}
		if read.GetId() != created.GetId() || read.GetProperties().GetFields()["live"].GetStringValue() != "ok" {
			t.Errorf("read: %v", read)
		}
		// A state written by the dynamic providers: the inputs go back without the serialized provider.
		if _, ok := read.GetInputs().GetFields()[dynamicProviderKey]; ok || read.GetInputs().GetFields()["dir"].GetStringValue() != dir {
			t.Errorf("read inputs: %v", read.GetInputs())
		}
		updated, err := p.Update(ctx, &pulumirpc.UpdateRequest{Urn: hostCommandURN, Olds: created.GetProperties(), News: mustStruct(t, map[string]any{"create": "echo again", "dir": dir})})
		if err != nil || updated.GetProperties().GetFields()["stdout"].GetStringValue() != "again" {
			t.Errorf("update: %v %v", updated, err)
		}
		if _, err := p.Delete(ctx, &pulumirpc.DeleteRequest{Urn: hostCommandURN, Id: created.GetId(), Properties: created.GetProperties()}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "f")); !os.IsNotExist(err) {
			t.Errorf("delete did not run: %v", err)
		}
		// A failing command's error reaches the engine as the method's error.
		if _, err := p.Create(ctx, &pulumirpc.CreateRequest{Urn: hostCommandURN, Properties: mustStruct(t, map[string]any{"create": "exit 3", "dir": dir})}); err == nil || err.Error() != "exit 3 failed (exit 3)" {
			t.Errorf("create error: %v", err)
		}
	})

	t.Run("read of a resource that is gone answers with no id", func(t *testing.T) {
		vm := newStandInVM(t)
		vm.write("status.json", map[string]any{"running": false})
		state := vmInputs().with(props{"stateDir": vm.dir, "scriptPath": filepath.Join(vm.dir, "vm.sh"), "pid": float64(1)})
		res, err := p.Read(ctx, &pulumirpc.ReadRequest{Urn: "urn:pulumi:dev::p::pcp-eval:index:MicroVmProcess::vm", Id: "x", Properties: mustStruct(t, state)})
		if err != nil || res.GetId() != "" || res.GetProperties() != nil {
			t.Errorf("read: %v %v", res, err)
		}
	})

	t.Run("read without a state (an import) is refused", func(t *testing.T) {
		_, err := p.Read(ctx, &pulumirpc.ReadRequest{Urn: hostCommandURN, Id: "x"})
		if err == nil || err.Error() != "pcp-eval:index:HostCommand: import is not supported: pcp-eval's host resources are made by `pulumi up`" {
			t.Errorf("read: %v", err)
		}
	})

	t.Run("the plugin's own answers", func(t *testing.T) {
		info, err := p.GetPluginInfo(ctx, nil)
		if err != nil || info.GetVersion() != version {
			t.Errorf("info: %v %v", info, err)
		}
		schema, err := p.GetSchema(ctx, &pulumirpc.GetSchemaRequest{})
		if err != nil || schema.GetSchema() != `{"name":"pcp-eval","version":"`+version+`"}` {
			t.Errorf("schema: %v %v", schema, err)
		}
		news := mustStruct(t, map[string]any{"x": "y"})
		cfg, err := p.CheckConfig(ctx, &pulumirpc.CheckRequest{News: news})
		if err != nil || cfg.GetInputs() != news {
			t.Errorf("check config: %v %v", cfg, err)
		}
		d, err := p.DiffConfig(ctx, &pulumirpc.DiffRequest{})
		if err != nil || d.GetChanges() != pulumirpc.DiffResponse_DIFF_NONE {
			t.Errorf("diff config: %v %v", d, err)
		}
	})
}

func TestCallForWithoutAnEngineWritesStderr(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	newProvider().callFor(context.Background(), hostCommandURN).log("a progress line")
	os.Stderr = saved
	w.Close()
	b := make([]byte, 100)
	n, _ := r.Read(b)
	if string(b[:n]) != "a progress line\n" {
		t.Errorf("stderr: %q", b[:n])
	}
}
