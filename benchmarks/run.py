"""Run every workload for eventbus, its peers and the floors, side by side, in one process.

Usage, from the repository root::

    .venv/bin/pip install -e '.[bench]'      # the peers, matplotlib and pyinstrument
    .venv/bin/python -m benchmarks.run        # full run: docs/assets/benchmarks.{json,png}, docs/performance.md
    .venv/bin/python -m benchmarks.run --quick            # a few thousand events; writes benchmarks/.results/
    .venv/bin/python -m benchmarks.run --only sync-1 --only threaded
    .venv/bin/python -m benchmarks.run --quick --no-peers  # eventbus and the floors only
    .venv/bin/python -m benchmarks.run --compiled          # also eventbus's compiled build, from .venv-compiled

A peer that is not installed is skipped with a line saying so. The targets of
issues 2, 3, 4 and 6 are printed as ratios after the tables; nothing is asserted.

With --compiled, eventbus's cases run a second time in the compiled build (mypyc,
``EVENTBUS_COMPILE=1 pip install .``), in a child process of the Python given
(default .venv-compiled/bin/python, which scripts/check.sh builds); its rows appear
below the pure build's as "... [compiled]", kind "compiled". The child runs after
the parent's rounds of each workload, so the two builds are not interleaved.

Only a complete full run (no --quick, --only, --no-peers or --rounds) publishes:
it writes the JSON and the chart into docs/assets/ and replaces the block between
the markers in docs/performance.md with the new tables. Any other run writes
benchmarks.json, benchmarks.png and benchmarks.md into benchmarks/.results/
(git-ignored), or wherever --out and --markdown say.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .targets import evaluate
from .workloads import BY_ID, FULL, QUICK, WORKLOADS, Result

KINDS = ("eventbus", "peer", "floor")
ROOT = Path(__file__).resolve().parent.parent
COMPILED_PYTHON = ROOT / ".venv-compiled" / "bin" / "python"
COMPILED_SUFFIX = " [compiled]"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand events per workload (CI smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BY_ID),
        metavar="WORKLOAD",
        help=f"run only this workload (repeatable): {', '.join(BY_ID)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write benchmarks.json/.png "
        "(default: docs/assets for a complete full run, else benchmarks/.results)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help="where to write the Markdown tables; a file holding the markers gets only its marked block replaced "
        "(default: docs/performance.md for a complete full run, else OUT/benchmarks.md)",
    )
    parser.add_argument("--no-peers", action="store_true", help="run eventbus and the floors only")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default: 9, or 3 with --quick)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--compiled",
        nargs="?",
        const=COMPILED_PYTHON,
        type=Path,
        metavar="PYTHON",
        help="also run eventbus's cases in the compiled build of PYTHON (default: .venv-compiled/bin/python)",
    )
    parser.add_argument("--eventbus-only", action="store_true", help="run eventbus's cases only (no peers, no floors)")
    return parser.parse_args(argv)


def _compiled_env(python: Path) -> dict[str, str]:
    """The environment in which *python* imports its installed (compiled) eventbus and this checkout's benchmarks."""
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"  # not the working directory: the checkout's pure eventbus would come first
    env.pop("PYTHONPATH", None)
    code = "import eventbus, os; print(eventbus.compiled, os.path.dirname(os.path.dirname(eventbus.__file__)))"
    probe = subprocess.run(
        [str(python), "-c", code],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    compiled, _, home = probe.stdout.strip().partition(" ")
    if probe.returncode != 0 or compiled != "True":
        said = probe.stdout.strip() or probe.stderr.strip()
        raise SystemExit(
            f"--compiled: {python} does not run eventbus's compiled build ({said}); "
            "build it with `bash scripts/check.sh` or `EVENTBUS_COMPILE=1 PYTHON -m pip install .`"
        )
    env["PYTHONPATH"] = os.pathsep.join([home, str(ROOT)])
    return env


def _run_compiled(python: Path, env: dict[str, str], workload: str, argv: list[str]) -> list[Result]:
    """Run *workload*'s eventbus cases in the compiled build; return its rows, renamed."""
    with tempfile.TemporaryDirectory() as out:
        command = [str(python), "-m", "benchmarks.run", *argv, "--only", workload, "--eventbus-only"]
        command += ["--no-chart", "--out", out]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the compiled build's run failed:\n{done.stdout}\n{done.stderr}")
        document = json.loads((Path(out) / "benchmarks.json").read_text(encoding="utf-8"))
    rows = []
    for row in document["results"]:
        row.pop("lost", None)
        rows.append(Result(**{**row, "case": row["case"] + COMPILED_SUFFIX, "kind": "compiled"}))
    return rows


def _beside(rows: list[Result], compiled: list[Result]) -> list[Result]:
    """Each compiled row right below the pure build's row of the same case."""
    by_case = {row.case.removesuffix(COMPILED_SUFFIX): row for row in compiled}
    merged: list[Result] = []
    for row in rows:
        merged.append(row)
        if row.case in by_case:
            merged.append(by_case.pop(row.case))
    return merged + list(by_case.values())


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = type(sizes)(**{**sizes.__dict__, "rounds": args.rounds})
    publishing = not (args.quick or args.only or args.no_peers or args.rounds or args.eventbus_only)
    out: Path = args.out or Path("docs/assets" if publishing else "benchmarks/.results")
    markdown_path: Path = args.markdown or (
        Path("docs/performance.md") if publishing and args.out is None else out / "benchmarks.md"
    )
    kinds = {"eventbus", "floor"} if args.no_peers else set(KINDS)
    if args.eventbus_only:
        kinds = {"eventbus"}
    compiled_env = _compiled_env(args.compiled) if args.compiled else None
    child_argv = [*(["--quick"] if args.quick else []), "--rounds", str(sizes.rounds)]
    workloads = [w for w in WORKLOADS if not args.only or w.id in args.only]
    command = "python -m benchmarks.run" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
    meta = report.machine(command, "quick" if args.quick else "full")
    meta["rounds"] = sizes.rounds

    print(f"eventbus benchmarks: {report.machine_line(meta)}")
    print(f"{sizes.rounds} rounds per figure, rounds interleaved across cases, median reported.")
    print()
    results: list[Result] = []
    started = time.perf_counter()
    for workload in workloads:
        print(f"== {workload.number}. {workload.title}")
        t0 = time.perf_counter()
        rows = workload.run(sizes, kinds)
        if compiled_env is not None:
            rows = _beside(rows, _run_compiled(args.compiled, compiled_env, workload.id, child_argv))
        results.extend(rows)
        print(report.text_table(workload, rows))
        print(f"({time.perf_counter() - t0:.1f} s)")
        print()

    checks = evaluate(results)
    print("== Targets (printed, never asserted)")
    print(report.targets_text(checks))
    print()

    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(report.to_json(workloads, results, checks, meta) + "\n", encoding="utf-8")
    tables = report.markdown(workloads, results, checks, meta)
    markdown_path = report.write_markdown(markdown_path, tables, whole_file_ok=markdown_path.name == "benchmarks.md")
    written = [markdown_path, out / "benchmarks.json"]
    if not args.no_chart:
        why_not = report.chart(out / "benchmarks.png", workloads, results, meta)
        if why_not:
            print(f"chart skipped: {why_not}")
        else:
            written.append(out / "benchmarks.png")
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
