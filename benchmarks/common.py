"""Helpers shared by the benchmark scripts (not a benchmark: ``make bench`` skips it).

Number formatting for the tables, the "target: met / missed by" wording, a cProfile summary, the
machine description and writing a result file. The scripts in this folder run as files
(``python benchmarks/x.py`` puts this folder on ``sys.path``: ``from common import ...``); the
``benchmarks.backends`` package runs as a module from the repository root
(``from benchmarks.common import ...``).
"""
from __future__ import annotations

import io
import os
import platform
import pstats
import statistics

import torch


def say(*a) -> None:
    """Print a progress line at once (runs take minutes; stdout may be a pipe)."""
    print(*a, flush=True)


def fmt(v, spec=".3f", none="–") -> str:
    """``v`` formatted with ``spec``; ``none`` for a missing value (None or NaN)."""
    if v is None or (isinstance(v, float) and v != v):
        return none
    return format(v, spec)


def mean_std(v: list[float], spec=".3f", std_of_one: bool = False) -> str:
    """"mean ± std" (population std) of the values that are not None or NaN; "–" if none is left.
    One value prints alone unless ``std_of_one`` (then "x ± 0.000")."""
    v = [x for x in v if x is not None and x == x]
    if not v:
        return "–"
    if len(v) == 1 and not std_of_one:
        return format(v[0], spec)
    return f"{format(statistics.mean(v), spec)} ± {format(statistics.pstdev(v), spec)}"


def verdict(value: float, target: float, at_most: bool, spec: str = ".3f", unit: str = "", factor: bool = False) -> str:
    """``**met**`` when ``value`` reaches ``target`` (``value <= target`` if ``at_most``, else
    ``>=``), otherwise ``**missed by <gap><unit>**``, with `` (<value / target>×)`` if ``factor``."""
    if (value <= target) if at_most else (value >= target):
        return "**met**"
    gap = value - target if at_most else target - value
    return f"**missed by {format(gap, spec)}{unit}" + (f" ({value / target:.1f}×)" if factor else "") + "**"


def profile_top(pr, n: int) -> str:
    """The ``n`` functions of a ``cProfile.Profile`` with the most own time, as pstats prints them
    from the ``ncalls`` header on, without blank lines."""
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(n)
    top = "\n".join(line for line in buf.getvalue().splitlines() if line.strip())
    return top[top.find("ncalls"):] if "ncalls" in top else top


def versions() -> str:
    """"torch X, Python Y" for the result files."""
    return f"torch {torch.__version__}, Python {platform.python_version()}"


def cpu_description() -> str:
    """"N cores (processor)" for the result files."""
    return f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"


def write_result(path: str, text: str) -> None:
    """Write a result file, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
