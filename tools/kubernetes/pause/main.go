// Command pause is the sandbox process of every pod in the test cluster: it
// holds the pod's namespaces and does nothing else. No registry is reachable
// here, so the cluster cannot pull the usual pause image; this one is built
// from source with the cluster binaries. It exits on SIGINT or SIGTERM and,
// as PID 1 of a pod with a shared process namespace, reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
