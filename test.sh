#!/usr/bin/env bash
# Sets up a fresh virtual environment in .venv, builds and installs nnforge
# with its test dependencies, then runs all tests: lit (test/**/*.mlir) and
# pytest (test/python). Usage: ./test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"

python3 -m venv --clear .venv
.venv/bin/python -m pip install --quiet --upgrade pip
start=$(date +%s)
.venv/bin/python -m pip install --quiet ".[test]"
echo "test.sh: built and installed nnforge in $(( $(date +%s) - start )) s"

.venv/bin/lit -sv test/
.venv/bin/python -m pytest -q -rs test/python "$@"
