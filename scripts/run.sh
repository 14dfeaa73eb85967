#!/usr/bin/env bash
# run.sh: installs what is missing, builds, and starts aiproxyd in the
# foreground with any arguments given (no --config: ./aiproxy.yaml if
# present, else the built-in defaults on 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/aiproxyd "$@"
