#!/usr/bin/env bash
# The full check, as CI runs it: lint, types, docs and tests on every Python we can find, and
# the tests again on the compiled build (mypyc; needs a C compiler and the Python headers).
# Creates .venv, .venv-compiled (and .venv-3.12, .venv-3.13 when those interpreters exist) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_servers.sh

ensure_venv .venv "${PYTHON:-python3}" dev
ensure_redis_server
ensure_nats_server
echo "== ruff"
.venv/bin/ruff check eventbus tests examples benchmarks setup.py build_backend
.venv/bin/ruff format --check eventbus tests examples benchmarks setup.py build_backend
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pyright --verifytypes eventbus (every public symbol fully typed)"
# verifytypes looks the package up on the interpreter's sys.path, which the editable install's
# import hook is not part of: PYTHONPATH puts the checkout there.
if PYTHONPATH="$PWD" .venv/bin/basedpyright --pythonpath .venv/bin/python --verifytypes eventbus --ignoreexternal \
    >.venv/verifytypes.log 2>&1; then
    grep "completeness score" .venv/verifytypes.log
else
    cat .venv/verifytypes.log
    exit 1
fi
echo "== pytest on $(.venv/bin/python --version)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

# The compiled build, as `EVENTBUS_COMPILE=1 pip install .` makes it, rebuilt on every run.
started=$SECONDS
echo "== compiled build (mypyc) into .venv-compiled"
ensure_compiled_venv .venv-compiled "${PYTHON:-python3}"
echo "== pytest on the compiled build, $(.venv-compiled/bin/python --version)"
# PYTHONSAFEPATH: `python -m pytest` would put the checkout first on sys.path, and its pure
# eventbus would shadow the installed compiled one; EVENTBUS_EXPECT_COMPILED makes
# tests/test_compiled.py fail if that happened.
EVENTBUS_EXPECT_COMPILED=1 PYTHONSAFEPATH=1 .venv-compiled/bin/python -m pytest -q -p no:cacheprovider "$@"
echo "== compiled build and its tests took $((SECONDS - started)) s"

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
