package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// daemonSetEndpoints: the pmcd and pmproxy endpoints of every node running a
// ready PCP pod of the DaemonSet, read with kubectl (reads only: the pods go
// with the DaemonSet). refresh sees nodes that joined or left and pods that
// are not ready. components/pcpDaemonSet.ts declares the inputs.
type daemonSetEndpoints struct{}

// podList: the parts of `kubectl get pods -o json` that name a pod's node and address.
type podList struct {
	Items []struct {
		Metadata struct {
			DeletionTimestamp string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Phase      string `json:"phase"`
			HostIP     string `json:"hostIP"`
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// nodeEndpoints: per node whose pod runs and is ready, pmcd's address:port and
// pmproxy's URL (the pods use the host's network: the node's own address).
func nodeEndpoints(pods podList, pmcdPort, pmproxyPort string) props {
	pmcd, pmproxy := map[string]any{}, map[string]any{}
	for _, pod := range pods.Items {
		node, address := pod.Spec.NodeName, pod.Status.HostIP
		ready := false
		for _, c := range pod.Status.Conditions {
			ready = ready || (c.Type == "Ready" && c.Status == "True")
		}
		if node == "" || address == "" || pod.Metadata.DeletionTimestamp != "" || pod.Status.Phase != "Running" || !ready {
			continue
		}
		host := address
		if strings.Contains(address, ":") {
			host = "[" + address + "]"
		}
		pmcd[node] = host + ":" + pmcdPort
		pmproxy[node] = "http://" + host + ":" + pmproxyPort
	}
	return props{"pmcdEndpoints": pmcd, "pmproxyUrls": pmproxy}
}

func readEndpoints(ctx context.Context, in props) (props, error) {
	args := []string{"--context", in.str("context")}
	if kubeconfig := in.str("kubeconfig"); kubeconfig != "" {
		args = append(args, "--kubeconfig", kubeconfig)
	}
	args = append(args, "--namespace", in.str("namespace"), "get", "pods", "--selector", in.str("selector"), "--output", "json")
	label := "kubectl " + strings.Join(args, " ")
	seconds, _ := in.number("timeoutSeconds")
	stdout, _, err := run(ctx, "kubectl", args, runOptions{label: label, timeout: time.Duration(seconds * float64(time.Second))})
	if err != nil {
		return nil, err
	}
	// kubectl's JSON spans many lines (not the host scripts' one-line contract): all of stdout.
	var pods podList
	if err := json.Unmarshal([]byte(stdout), &pods); err != nil {
		head := stdout
		if len(head) > 400 {
			head = head[:400]
		}
		return nil, fmt.Errorf("%s: expected a JSON pod list on stdout, got: %s", label, head)
	}
	return nodeEndpoints(pods, plainText(in["pmcdPort"]), plainText(in["pmproxyPort"])), nil
}

func (daemonSetEndpoints) check(news props) []*pulumirpc.CheckFailure {
	return textInputs(news, []string{"context", "namespace", "selector"}, []string{"kubeconfig", "revision"}, nil)
}

func (daemonSetEndpoints) diff(_ context.Context, _ *call, olds, news props) (diffResult, error) {
	var d diffResult
	for k := range news {
		if !same(olds[k], news[k]) {
			d.changed = append(d.changed, k)
		}
	}
	sort.Strings(d.changed)
	d.changes = len(d.changed) > 0
	return d, nil
}

func (daemonSetEndpoints) create(ctx context.Context, _ *call, in props) (string, props, error) {
	endpoints, err := readEndpoints(ctx, in)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("%s/%s/%s", in.str("context"), in.str("namespace"), in.str("selector")), in.with(endpoints), nil
}

func (daemonSetEndpoints) read(ctx context.Context, _ *call, id string, state props) (string, props, error) {
	endpoints, err := readEndpoints(ctx, state)
	if err != nil {
		return "", nil, err
	}
	return id, state.with(endpoints), nil
}

func (daemonSetEndpoints) update(ctx context.Context, _ *call, _, news props) (props, error) {
	endpoints, err := readEndpoints(ctx, news)
	if err != nil {
		return nil, err
	}
	return news.with(endpoints), nil
}

func (daemonSetEndpoints) delete(context.Context, *call, props) error { return nil }
