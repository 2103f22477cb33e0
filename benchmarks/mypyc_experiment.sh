#!/usr/bin/env bash
# The mypyc experiment of docs/performance.md ("Where pure Python stops"): compile the
# three hot modules in a scratch copy of the committed code, with the small changes in
# mypyc-experiment.patch, and run the sync and registration workloads against them.
#
# An experiment, not a build: eventbus ships pure Python, and neither the setup nor CI
# needs a compiler. Needs the project's .venv with the bench and typing extras (mypy
# brings mypyc; `bash scripts/check.sh` installs both) and a C compiler. Extra
# arguments go to benchmarks.run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

git -C "$root" archive HEAD | tar -x -C "$scratch"
cd "$scratch"
git apply "$root/benchmarks/mypyc-experiment.patch"
# mypyc runs setuptools here, whose version in the venv may refuse pyproject.toml's
# PEP 639 license string; the compiled modules do not need it.
mv pyproject.toml pyproject.toml.aside
if ! "$python" -m mypyc eventbus/_strategies.py eventbus/_dispatch.py eventbus/_registry.py >mypyc.log 2>&1; then
    tail -n 30 mypyc.log
    exit 1
fi
mv pyproject.toml.aside pyproject.toml
echo "== compiled: $(ls eventbus/*.so | tr '\n' ' ')"
PYTHONPATH="$scratch" "$python" -m benchmarks.run \
    --only sync-1 --only sync-10 --only topics --only register \
    --no-chart --out "$root/benchmarks/.results/mypyc" "$@"
