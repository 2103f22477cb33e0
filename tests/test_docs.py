"""The documentation site builds with ``mkdocs build --strict``.

Strict mode turns every warning into a failure: a broken link or anchor, a page
missing from the nav, an example included with ``--8<--`` that no longer exists,
or a docstring that mkdocstrings cannot render. The build reads the docstrings of
the package, so changing the code can break the docs; this test says so at once.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300.0  # seconds; the build takes a few on an idle machine

_DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")


def _missing_tools() -> list[str]:
    missing = []
    for module in _DOCS_TOOLS:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is missing
            found = False
        if not found:
            missing.append(module)
    return missing


@pytest.mark.timeout(BUILD_TIMEOUT + 60)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds: no warning about links, includes, the nav or docstrings."""
    missing = _missing_tools()
    if missing:
        pytest.skip(
            f"the docs tools are not installed ({', '.join(missing)} missing); "
            "install them with `pip install -e .[docs]` to build the site"
        )
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's notice about its successor; noise here
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,  # snippets (--8<--) are resolved from the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    for page in ("index.html", "design/index.html", "api/index.html", "changelog/index.html"):
        assert (site / page).is_file(), f"the build did not produce {page}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="eventbus.EventBus.publish"' in api, "the API reference did not render EventBus.publish"
