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
        "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
        touch "$stamp"
    fi
}
