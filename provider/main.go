// pulumi-resource-pcp-eval: the provider plugin of pcp-eval's host resources
// (host commands, the bridge and TAP devices, the VM processes, a DaemonSet's
// endpoints). Each resource is a thin layer over a host script in host/, as the
// Node.js dynamic providers it replaces were; a Go plugin answers the engine
// within milliseconds where a Node.js one took a second or more to load
// (bench/README.md, issue 17).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// version is stamped by provider/build.sh.
var version = "0.0.0-dev"

func main() {
	if err := serve(); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-pcp-eval: %v\n", err)
		os.Exit(1)
	}
}

func serve() error {
	// The engine passes every plugin flags (--logtostderr, -v=N, --tracing URL,
	// some registered by the SDK's logging package) and then its own address;
	// only the address is used, so the flags are read by a set of our own.
	flags := flag.NewFlagSet("pulumi-resource-pcp-eval", flag.ContinueOnError)
	flags.String("tracing", "", "tracing endpoint (ignored)")
	flags.Bool("logtostderr", false, "(ignored)")
	flags.Bool("logflow", false, "(ignored)")
	flags.Int("v", 0, "verbosity (ignored)")
	if err := flags.Parse(os.Args[1:]); err != nil {
		return err
	}

	p := newProvider()
	// Without an engine (the tests drive the plugin directly) progress goes to stderr.
	if addr := flags.Arg(0); addr != "" {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("cannot reach the engine at %s: %w", addr, err)
		}
		defer conn.Close()
		p.engine = pulumirpc.NewEngineClient(conn)
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: p.cancel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(srv, p)
			return nil
		},
	})
	if err != nil {
		return err
	}
	// The handshake: the engine reads the port from the first line of stdout.
	fmt.Println(handle.Port)
	return <-handle.Done
}
