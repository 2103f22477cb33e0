# Shared by scripts/demo.sh and scripts/check.sh: make a virtual environment and install into it.
# Usage: ensure_venv DIR PYTHON EXTRAS   (EXTRAS like "dev" or "" for the package alone)
ensure_venv() {
    local dir=$1 python=$2 extras=$3
    local stamp="$dir/.installed-$extras"
    make_venv "$dir" "$python"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing eventbus${extras:+[$extras]} into $dir"
        quietly "$dir/install.log" "$dir/bin/python" -m pip install --disable-pip-version-check --upgrade pip
        quietly "$dir/install.log" "$dir/bin/python" -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}"
        touch "$stamp"
    fi
}

# Make a virtual environment in DIR with PYTHON unless one is there.
# Usage: make_venv DIR PYTHON
make_venv() {
    local dir=$1 python=$2
    if [ ! -x "$dir/bin/python" ]; then
        if ! "$python" -m venv "$dir" 2>/dev/null; then
            rm -rf "$dir"
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "== $python has no venv module; installing Debian's python3-venv"
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                "$python" -m venv "$dir"
            else
                echo "error: '$python -m venv' failed. On Debian or Ubuntu run: sudo apt-get install python3-venv" >&2
                return 1
            fi
        fi
    fi
}

# Run a command with its output going to LOG (appended); print the log only if the command fails.
# Keeps the setup quiet: pip and setuptools print progress and warning banners (the editable
# install's deprecation notice, for one) that say nothing when the install works.
# Usage: quietly LOG COMMAND...
quietly() {
    local log=$1 start=1
    shift
    if [ -f "$log" ]; then
        start=$(($(wc -l <"$log") + 1))
    fi
    echo "\$ $*" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
        echo "error: this command failed (its output is also in $log):" >&2
        tail -n "+$start" "$log" >&2
        return 1
    fi
}

# The compiled build (EVENTBUS_COMPILE=1: mypyc) installed, not editable, in DIR with the test
# extra's tools. The package is rebuilt from the working tree on every call, so the tests never
# run stale extension modules; the test tools are installed on first use only.
# Usage: ensure_compiled_venv DIR PYTHON
ensure_compiled_venv() {
    local dir=$1 python=$2
    local stamp="$dir/.installed-test" log="$dir/install.log"
    check_compiler "$python"
    make_venv "$dir" "$python"
    if [ ! -f "$stamp" ]; then
        quietly "$log" "$dir/bin/python" -m pip install --disable-pip-version-check --upgrade pip
    fi
    # setuptools reuses build/ between builds: a module that moved would be shipped twice.
    rm -rf build
    quietly "$log" env EVENTBUS_COMPILE=1 \
        "$dir/bin/python" -m pip install --disable-pip-version-check --no-deps --force-reinstall .
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        # The installed build's own metadata brings the dependencies and the test extra.
        quietly "$log" "$dir/bin/python" -m pip install --disable-pip-version-check "eventbus[test]"
        touch "$stamp"
    fi
}

# mypyc needs a C compiler and the Python headers: say so plainly, not deep in pip's output.
# Usage: check_compiler PYTHON
check_compiler() {
    local python=$1 include
    if ! command -v "${CC:-cc}" >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
        echo "error: the compiled build (mypyc) needs a C compiler, and neither ${CC:-cc} nor gcc is on the PATH." >&2
        echo "       On Debian or Ubuntu: apt-get install gcc python3-dev" >&2
        return 1
    fi
    include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -f "$include/Python.h" ]; then
        echo "error: the compiled build (mypyc) needs the Python headers, and $include/Python.h is missing." >&2
        echo "       On Debian or Ubuntu: apt-get install python3-dev (for $("$python" --version))" >&2
        return 1
    fi
}
