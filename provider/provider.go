package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// pkg is the package name: type tokens are pcp-eval:index:<Kind>, and the engine runs pulumi-resource-pcp-eval.
const pkg = "pcp-eval"

// diffResult is what a kind's diff decides.
type diffResult struct {
	// Keys whose change replaces the resource.
	replaces []string
	// Keys that changed, replacing or not (shown in the plan).
	changed []string
	// Whether anything changes; a degraded resource changes with no key changed.
	changes             bool
	deleteBeforeReplace bool
}

// kind is one resource type's behaviour; every host effect goes through a host script.
type kind interface {
	check(news props) []*pulumirpc.CheckFailure
	diff(ctx context.Context, c *call, olds, news props) (diffResult, error)
	create(ctx context.Context, c *call, inputs props) (string, props, error)
	// read returns id "" for a resource that is gone.
	read(ctx context.Context, c *call, id string, state props) (string, props, error)
	update(ctx context.Context, c *call, olds, news props) (props, error)
	delete(ctx context.Context, c *call, state props) error
}

// call is one request's context: where its progress lines go.
type call struct {
	log func(line string)
}

type provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	engine pulumirpc.EngineClient
	kinds  map[string]kind
	cancel chan bool
	// Serializes writes to stderr when there is no engine.
	mu sync.Mutex
}

func newProvider() *provider {
	return &provider{
		cancel: make(chan bool),
		kinds: map[string]kind{
			token("HostCommand"):        hostCommand{},
			token("HostState"):          hostState{},
			token("MicroVmProcess"):     microVmProcess{},
			token("NetBridge"):          netBridge{},
			token("NetTap"):             netTap{},
			token("DaemonSetEndpoints"): daemonSetEndpoints{},
		},
	}
}

func token(kind string) string { return pkg + ":index:" + kind }

// typeOf is the type token of a URN (urn:pulumi:stack::project::[parent$]type::name).
func typeOf(urn string) string {
	parts := strings.Split(urn, "::")
	if len(parts) < 4 {
		return ""
	}
	types := strings.Split(parts[2], "$")
	return types[len(types)-1]
}

func (p *provider) kindOf(urn, typ string) (kind, error) {
	if typ == "" {
		typ = typeOf(urn)
	}
	k, ok := p.kinds[typ]
	if !ok {
		return nil, fmt.Errorf("pulumi-resource-pcp-eval: unknown resource type %q (this plugin serves %s)", typ, strings.Join(p.kindNames(), ", "))
	}
	return k, nil
}

func (p *provider) kindNames() []string {
	names := make([]string, 0, len(p.kinds))
	for n := range p.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// callFor sends a request's progress lines to the engine on the resource's row, or to stderr.
func (p *provider) callFor(ctx context.Context, urn string) *call {
	return &call{log: func(line string) {
		if p.engine != nil && urn != "" {
			_, err := p.engine.Log(ctx, &pulumirpc.LogRequest{Severity: pulumirpc.LogSeverity_INFO, Message: line, Urn: urn})
			if err == nil {
				return
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		fmt.Fprintln(os.Stderr, line)
	}}
}

func (p *provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *provider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, pkg, version)}, nil
}

// The provider has no configuration.
func (p *provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *provider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	// No secrets in, no previews of creates: a preview runs check, diff and the reads only.
	return &pulumirpc.ConfigureResponse{}, nil
}

func (p *provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	news := propsOf(req.GetNews())
	inputs, err := news.toStruct()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: k.check(news)}, nil
}

func (p *provider) Diff(ctx context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	d, err := k.diff(ctx, p.callFor(ctx, req.GetUrn()), propsOf(req.GetOlds()), propsOf(req.GetNews()))
	if err != nil {
		return nil, err
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if d.changes || len(d.replaces) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes:             changes,
		Replaces:            d.replaces,
		Diffs:               d.changed,
		DeleteBeforeReplace: d.deleteBeforeReplace,
	}, nil
}

func (p *provider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	id, outs, err := k.create(ctx, p.callFor(ctx, req.GetUrn()), propsOf(req.GetProperties()))
	if err != nil {
		return nil, err
	}
	s, err := outs.toStruct()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: s}, nil
}

func (p *provider) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	state := propsOf(req.GetProperties())
	if len(state) == 0 {
		return nil, fmt.Errorf("%s: import is not supported: pcp-eval's host resources are made by `pulumi up`", typeOf(req.GetUrn()))
	}
	id, outs, err := k.read(ctx, p.callFor(ctx, req.GetUrn()), req.GetId(), state)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return &pulumirpc.ReadResponse{}, nil
	}
	s, err := outs.toStruct()
	if err != nil {
		return nil, err
	}
	inputs := req.GetInputs()
	if inputs != nil {
		// A state written by the Node.js dynamic providers: its serialized provider goes with the next write.
		if in := propsOf(inputs); len(in) != len(inputs.GetFields()) {
			if inputs, err = in.toStruct(); err != nil {
				return nil, err
			}
		}
	}
	return &pulumirpc.ReadResponse{Id: id, Properties: s, Inputs: inputs}, nil
}

func (p *provider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	outs, err := k.update(ctx, p.callFor(ctx, req.GetUrn()), propsOf(req.GetOlds()), propsOf(req.GetNews()))
	if err != nil {
		return nil, err
	}
	s, err := outs.toStruct()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: s}, nil
}

func (p *provider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	k, err := p.kindOf(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	if err := k.delete(ctx, p.callFor(ctx, req.GetUrn()), propsOf(req.GetProperties())); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
