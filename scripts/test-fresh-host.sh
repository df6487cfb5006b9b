#!/usr/bin/env bash
# Sets up a fresh machine (system packages, npm dependencies) and runs every
# test. This is the README's test command and what CI runs.
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
bash scripts/test.sh
