"""Shared pieces of the benchmark suite: results, timing helpers, machine facts, RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Result:
    """One figure. `lower_is_better` decides how value and target form the ratio (>= 1 passes)."""

    figure: str
    value: float | None
    unit: str
    target: float | None
    lower_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.target is None or self.value == 0:
            return None
        return self.target / self.value if self.lower_is_better else self.value / self.target

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.value is None:
            return False
        return self.value <= self.target if self.lower_is_better else self.value >= self.target


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def machine() -> dict[str, str]:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem_gib:.0f} GiB",
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(results: list[Result]) -> str:
    rows = [("figure", "value", "target", "ratio", "pass")]
    for r in results:
        value = "n/a" if r.value is None else f"{r.value:,.2f} {r.unit}".strip()
        target = (
            ""
            if r.target is None
            else f"{'<=' if r.lower_is_better else '>='} {r.target:,.2f} {r.unit}"
        )
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        passed = {None: "info", True: "PASS", False: "FAIL"}[r.passed]
        rows.append((r.figure, value, target, ratio, passed))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_results(
    results: list[Result], *, scale: str, versions: dict[str, str], notes: list[str]
) -> None:
    """Prepend this run to bench/RESULTS.md (newest first), keeping earlier runs below."""
    facts = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"## Run of {now}\n\n"
        f"- Machine: {facts['cores']} cores, {facts['memory']}, {facts['cpu']}; {facts['os']}\n"
        f"- Versions: Python {facts['python']}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"\n- Scale: {scale}\n"
    )
    body = header + "\n" + format_table(results) + "\n"
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    title = "# Benchmark results\n\nWritten by `make bench` (bench/run.py); newest run first.\n\n"
    previous = ""
    if RESULTS_PATH.exists():
        text = RESULTS_PATH.read_text()
        previous = text[len(title) :] if text.startswith(title) else text
    RESULTS_PATH.write_text(title + body + ("\n" + previous if previous.strip() else ""))
