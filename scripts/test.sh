#!/usr/bin/env bash
# The whole test suite: type check, shell lint, then unit, integration and
# end-to-end tests in one node test run, so its closing summary counts every
# test. Prints a final "tests: N passed, N failed, N skipped" line.
set -euo pipefail

cd "$(dirname "$0")/.."

npx tsc --noEmit -p .
echo "typecheck: ok"
mapfile -t shell_scripts < <(find host scripts test tools nix provider .ci -type f \( -name '*.sh' -o -path '.ci/run' \) -not -path '*/node_modules/*' 2>/dev/null | sort)
shellcheck "${shell_scripts[@]}"
echo "shellcheck: ok (${#shell_scripts[@]} scripts)"

# Every first-use cost is paid here, each with its own progress line, so none
# falls inside a timed phase of a test (a VM start's readiness window, a test's
# timeout). Caches live under PCP_EVAL_CACHE_DIR (default ~/.cache/pcp-eval).
prepare() { # what, command...: runs it, prints "prepare: what: <last stdout line> (N s)"
    local what=$1 start out
    shift
    start=$SECONDS
    echo "prepare: $what ..."
    out=$("$@") || { echo "prepare: $what failed" >&2; exit 1; }
    echo "prepare: $what: ${out##*$'\n'} ($((SECONDS - start)) s)"
}
# The real Pulumi engine for test/e2e, built from Go modules once per version.
if command -v go >/dev/null; then
    # pcp-eval's own provider plugin (provider/), which the host resources' tests
    # and every engine run of the program start; built into provider/bin.
    prepare "pcp-eval provider plugin (provider/build.sh)" bash provider/build.sh
    prepare "Pulumi engine (tools/build.sh)" bash tools/build.sh
    PCP_EVAL_TOOLS_BIN=$(bash tools/build.sh --print | jq -r .binDir)
    export PCP_EVAL_TOOLS_BIN
    # The kubernetes provider plugin the k8s e2e's engine runs, and the test
    # cluster's binaries (test/helpers/cluster.ts), cached the same way; the
    # tests then only look them up (--print). Cold: Go module downloads and
    # builds of pulumi-kubernetes (~11 min) and k8s.io/kubernetes (tens of minutes).
    prepare "Kubernetes provider plugin (tools/build-kubernetes.sh provider)" bash tools/build-kubernetes.sh provider
    prepare "Kubernetes cluster binaries (tools/build-kubernetes.sh cluster)" bash tools/build-kubernetes.sh cluster
    export PCP_EVAL_KUBERNETES_BUILT=true
fi
# The fixture VM's kernel (apt-get download) and initramfs, then the KVM
# verdict for this boot from a probe boot of that kernel, as make-runner.sh asks.
if command -v qemu-system-x86_64 >/dev/null; then
    prepare "fixture VM (test/fixtures/vm/build.sh)" bash test/fixtures/vm/build.sh
    fixture=$(bash test/fixtures/vm/build.sh)
    prepare "KVM verdict (host/kvm-probe.sh)" bash host/kvm-probe.sh \
        --kernel "$(jq -r .kernel <<<"$fixture")" --initrd "$(jq -r .initrd <<<"$fixture")" \
        --append "console=ttyS0 panic=-1 fixture.probe=1"
fi
# The PCP test image (Debian packages fetched with apt, packed as a docker-archive).
if [[ $(id -u) == 0 ]] && command -v dpkg-deb >/dev/null; then
    prepare "PCP test image (test/fixtures/pcp-image/build.sh)" bash test/fixtures/pcp-image/build.sh
fi

mapfile -t test_files < <(find components test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
mkdir -p test-results
tap=test-results/tests.tap
status=0
node --import tsx --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${test_files[@]}" || status=$?

count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; }
echo "tests: $(count pass) passed, $(count fail) failed, $(count skipped) skipped"
exit "$status"
