#!/usr/bin/env bash
# The full check, as CI runs it: lint, types, docs and tests on every Python we can find.
# Creates .venv (and .venv-3.12, .venv-3.13 when those interpreters exist) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_redis.sh

ensure_venv .venv "${PYTHON:-python3}" dev
ensure_redis_server
echo "== ruff"
.venv/bin/ruff check eventbus tests examples benchmarks
.venv/bin/ruff format --check eventbus tests examples benchmarks
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest on $(.venv/bin/python --version)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

# Find pythonX.Y on the PATH, or among pyenv's versions (whose shims refuse versions
# that are installed but not selected).
find_python() {
    local version=$1 candidate
    if command -v "python$version" >/dev/null 2>&1 && "python$version" -c "" 2>/dev/null; then
        echo "python$version"
        return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)/versions/$version".*/bin/"python$version"; do
            if [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
                echo "$candidate"
                return 0
            fi
        done
    fi
    return 1
}

for version in 3.12 3.13; do
    if python=$(find_python "$version"); then
        ensure_venv ".venv-$version" "$python" test
        echo "== pytest on $(".venv-$version/bin/python" --version)"
        ".venv-$version/bin/python" -m pytest -q -p no:cacheprovider "$@"
    else
        echo "== python$version not found: skipped"
    fi
done
echo "== all checks passed"
