"""Run every workload for eventbus, its peers and the floors, side by side, in one process.

Usage, from the repository root::

    .venv/bin/pip install -e '.[bench]'      # the peers, matplotlib and pyinstrument
    .venv/bin/python -m benchmarks.run        # full run: docs/assets/benchmarks.{json,png}, docs/performance.md
    .venv/bin/python -m benchmarks.run --quick            # a few thousand events; writes benchmarks/.results/
    .venv/bin/python -m benchmarks.run --only sync-1 --only threaded
    .venv/bin/python -m benchmarks.run --quick --no-peers  # eventbus and the floors only

A peer that is not installed is skipped with a line saying so. The targets of
issues 2, 3, 4 and 6 are printed as ratios after the tables; nothing is asserted.

Only a complete full run (no --quick, --only, --no-peers or --rounds) publishes:
it writes the JSON and the chart into docs/assets/ and replaces the block between
the markers in docs/performance.md with the new tables. Any other run writes
benchmarks.json, benchmarks.png and benchmarks.md into benchmarks/.results/
(git-ignored), or wherever --out and --markdown say.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import report
from .targets import evaluate
from .workloads import BY_ID, FULL, QUICK, WORKLOADS, Result

KINDS = ("eventbus", "peer", "floor")


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = type(sizes)(**{**sizes.__dict__, "rounds": args.rounds})
    publishing = not (args.quick or args.only or args.no_peers or args.rounds)
    out: Path = args.out or Path("docs/assets" if publishing else "benchmarks/.results")
    markdown_path: Path = args.markdown or (
        Path("docs/performance.md") if publishing and args.out is None else out / "benchmarks.md"
    )
    kinds = {"eventbus", "floor"} if args.no_peers else set(KINDS)
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
