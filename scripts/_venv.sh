# Shared by scripts/demo.sh and scripts/check.sh: make a virtual environment and install into it.
# Usage: ensure_venv DIR PYTHON EXTRAS   (EXTRAS like "dev" or "" for the package alone)
ensure_venv() {
    local dir=$1 python=$2 extras=$3
    local stamp="$dir/.installed-$extras"
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
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing eventbus${extras:+[$extras]} into $dir"
        quietly "$dir/install.log" "$dir/bin/python" -m pip install --disable-pip-version-check --upgrade pip
        quietly "$dir/install.log" "$dir/bin/python" -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}"
        touch "$stamp"
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
