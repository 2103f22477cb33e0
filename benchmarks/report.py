"""Output: the console table, the Markdown table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .targets import Check
    from .workloads import Result, Workload

PEER_DISTRIBUTIONS = (
    "pydantic",
    "psygnal",
    "blinker",
    "pyee",
    "Pypubsub",
    "PyDispatcher",
    "geeteventbus",
    "abxbus",
    "matplotlib",
)

KIND_COLOURS = {"eventbus": "#d62728", "compiled": "#9467bd", "peer": "#1f77b4", "floor": "#8c8c8c"}


# -- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev


def machine(command: str, mode: str) -> dict[str, Any]:
    """What the figures were measured on, by whom and how."""
    versions: dict[str, str] = {}
    for name in PEER_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "mode": mode,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "eventbus_revision": _git_revision(),
        "versions": versions,
    }


def machine_line(meta: dict[str, Any]) -> str:
    return (
        f"{meta['date']} · {meta['cpu']} · {meta['nproc']} CPUs · {meta['python']} · "
        f"load {' '.join(str(x) for x in meta['load_average'])} · eventbus {meta['eventbus_revision']} · "
        f"{meta['mode']} mode"
    )


# -- cells -----------------------------------------------------------------------------------


def _reference(workload: Workload, rows: list[Result]) -> float | None:
    for row in rows:
        if row.case == workload.reference and not (row.skipped or row.error):
            return row.metrics.get(workload.primary)
    return None


def _cells(workload: Workload, row: Result, reference: float | None) -> list[str]:
    if row.skipped or row.error:
        return [""] * (len(workload.columns) + 2)
    cells = [format(row.metrics[c.key], c.fmt) if c.key in row.metrics else "" for c in workload.columns]
    value = row.metrics.get(workload.primary)
    cells.append(f"{value / reference:.2f}" if value is not None and reference else "")
    lost = row.lost
    if lost is None:
        cells.append("-")
    elif lost == 0:
        cells.append("0")
    else:
        cells.append(f"{lost:,} of {row.expected:,}")
    return cells


def _note(row: Result) -> str:
    if row.skipped:
        return f"skipped: {row.skipped}"
    if row.error:
        return f"ERROR: {row.error}"
    return row.note


def _headers(workload: Workload) -> list[str]:
    return ["case", "kind", *(c.header for c in workload.columns), f"vs {workload.reference}", "lost", "note"]


def _rows(workload: Workload, rows: list[Result]) -> list[list[str]]:
    reference = _reference(workload, rows)
    return [[row.case, row.kind, *_cells(workload, row, reference), _note(row)] for row in rows]


# -- console ---------------------------------------------------------------------------------


def text_table(workload: Workload, rows: list[Result]) -> str:
    headers = _headers(workload)
    body = _rows(workload, rows)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = range(2, len(headers) - 2)

    def fmt(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines.extend(fmt(r) for r in body)
    return "\n".join(lines)


def targets_text(checks: list[Check]) -> str:
    return "\n".join(check.line() for check in checks)


# -- Markdown ----------------------------------------------------------------------------------


def markdown(workloads: list[Workload], results: list[Result], checks: list[Check], meta: dict[str, Any]) -> str:
    out = [
        f"Measured {machine_line(meta)}, with `{meta['command']}`.",
        "",
        "Each figure is the median of the rounds; the rounds of all cases are interleaved. "
        "The `vs` column divides by the reference case named in its header (time: lower is better; "
        "rates: higher is better). `lost` compares handler calls with events posted.",
        "",
    ]
    for workload in workloads:
        rows = [r for r in results if r.workload == workload.id]
        if not rows:
            continue
        direction = "Higher is better." if workload.higher_is_better else "Lower is better."
        out += [f"### {workload.number}. {workload.title}", "", f"{workload.description} {direction}", ""]
        headers = _headers(workload)
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join("---:" if 2 <= i < len(headers) - 2 else "---" for i in range(len(headers))) + "|")
        for cells in _rows(workload, rows):
            cells[0] = f"**{cells[0]}**" if cells[1] == "eventbus" else cells[0]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    if checks:
        out += ["### Targets", "", "Printed, never asserted. ✓ met, ✗ not met, - not measurable in this run.", ""]
        out += [f"- {check.line()}" for check in checks]
        out.append("")
    return "\n".join(out)


BEGIN_MARKER = "<!-- BEGIN benchmark tables: generated by `python -m benchmarks.run`, do not edit by hand -->"
END_MARKER = "<!-- END benchmark tables -->"


def write_markdown(path: Path, text: str, *, whole_file_ok: bool) -> Path:
    """Write *text* between the markers of *path*, or as the whole of *path*; return where it went.

    A file that exists without the markers is left alone unless *whole_file_ok*:
    the tables then go to ``benchmarks/.results/benchmarks.md`` instead.
    """
    if path.exists():
        current = path.read_text(encoding="utf-8")
        start, end = current.find(BEGIN_MARKER), current.find(END_MARKER)
        if 0 <= start < end:
            updated = current[: start + len(BEGIN_MARKER)] + "\n\n" + text.strip() + "\n\n" + current[end:]
            path.write_text(updated, encoding="utf-8")
            return path
        if not whole_file_ok:
            print(f"{path} has no benchmark markers: left alone")
            path = Path("benchmarks/.results/benchmarks.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- JSON --------------------------------------------------------------------------------------


def to_json(workloads: list[Workload], results: list[Result], checks: list[Check], meta: dict[str, Any]) -> str:
    document = {
        "meta": meta,
        "workloads": [
            {
                "id": w.id,
                "number": w.number,
                "title": w.title,
                "description": w.description,
                "primary": w.primary,
                "unit": w.unit,
                "higher_is_better": w.higher_is_better,
                "reference": w.reference,
            }
            for w in workloads
        ],
        "results": [r.to_json() for r in results],
        "targets": [c.to_json() for c in checks],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


# -- chart -------------------------------------------------------------------------------------


def _short(value: float) -> str:
    """A bar label: 1.05M, 27.3k, 873, 2.27."""
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    if value >= 1e4:
        return f"{value / 1e3:.3g}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def chart(path: Path, workloads: list[Workload], results: list[Result], meta: dict[str, Any]) -> str | None:
    """Draw one horizontal bar chart per workload into *path*; return why not, if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"

    shown = [w for w in workloads if any(r.workload == w.id and not (r.skipped or r.error) for r in results)]
    if not shown:
        return "nothing to chart"
    columns = 2
    rows_of_plots = (len(shown) + columns - 1) // columns
    fig, axes = plt.subplots(rows_of_plots, columns, figsize=(16, 4.4 * rows_of_plots), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, workload in zip(axes.flat, shown, strict=False):
        everything = [r for r in results if r.workload == workload.id]
        rows = [r for r in everything if not (r.skipped or r.error)]
        keys = workload.chart_keys or (workload.primary,)
        headers = {c.key: c.header for c in workload.columns}
        height = 0.8 / len(keys)
        positions = range(len(rows))
        values_seen: list[float] = []
        for k, key in enumerate(keys):
            values = [r.metrics.get(key, 0.0) for r in rows]
            values_seen += [v for v in values if v > 0]
            offsets = [p + (k - (len(keys) - 1) / 2) * height for p in positions]
            light = k < len(keys) - 1
            bars = ax.barh(
                offsets,
                values,
                height=height * 0.95,
                color=[KIND_COLOURS.get(r.kind, "#444444") for r in rows],
                alpha=0.4 if light else 1.0,
            )
            for bar, value, row in zip(bars, values, rows, strict=True):
                label = f" {_short(value)}"
                if not light and row.lost:
                    label += f"  ({row.lost:,} lost)"
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=7)
        ax.set_yticks(list(positions))
        ax.set_yticklabels([r.case for r in rows], fontsize=8)
        ax.invert_yaxis()
        if values_seen and max(values_seen) / min(values_seen) > 30:
            ax.set_xscale("log")
        direction = "higher is better" if workload.higher_is_better else "lower is better"
        unit = " / ".join(headers.get(k, k) for k in keys)
        ax.set_title(f"{workload.number}. {workload.title}\n{unit} ({direction})", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.22)
        if len(keys) > 1:
            legend = [
                Patch(color="#555555", alpha=0.4 if k < len(keys) - 1 else 1.0, label=headers.get(key, key))
                for k, key in enumerate(keys)
            ]
            ax.legend(handles=legend, fontsize=7, loc="best")
        missing = [r for r in everything if r.skipped or r.error]
        if missing:
            text = "\n".join(f"{r.case}: {'skipped' if r.skipped else 'error'}" for r in missing)
            ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#a00000")
    handles = [Patch(color=colour, label=kind) for kind, colour in KIND_COLOURS.items()]
    fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=9)
    fig.suptitle(f"eventbus benchmarks · {machine_line(meta)}", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def replot(json_path: Path, png_path: Path) -> str | None:
    """Draw the chart again from a JSON file that `benchmarks.run` wrote (no measuring)."""
    from .workloads import BY_ID, Result

    document = json.loads(json_path.read_text(encoding="utf-8"))
    workloads = [BY_ID[w["id"]] for w in document["workloads"] if w["id"] in BY_ID]
    fields = ("workload", "case", "kind", "metrics", "rounds", "expected", "delivered", "skipped", "error", "note")
    results = [Result(**{name: row[name] for name in fields}) for row in document["results"]]
    return chart(png_path, workloads, results, document["meta"])


if __name__ == "__main__":
    # python -m benchmarks.report [docs/assets/benchmarks.json [docs/assets/benchmarks.png]]
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/assets/benchmarks.json")
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".png")
    problem = replot(source, target)
    print(problem or f"wrote {target}")
    sys.exit(1 if problem else 0)
