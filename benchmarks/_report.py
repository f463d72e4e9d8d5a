"""Shared helpers for the benchmark scripts: timing with medians and writing BENCHMARKS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun the command to refresh it.\n"


def median_seconds(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: Dict[str, Callable[[], object]], *, repeats: int = 15,
                        warmup: int = 2) -> Dict[str, float]:
    """Median seconds of each function, timed in interleaved rounds so drifts in machine load hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(median_seconds(fn, repeats=1, warmup=0))
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    """One line naming the hardware and software the numbers were taken on."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")  # Linux names the CPU model here; elsewhere platform's answer stands
    if info.exists():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = f"{os.cpu_count()} cores"
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < (os.cpu_count() or 1):
        cores += f" (this process pinned to {len(os.sched_getaffinity(0))})"
    return (
        f"{cpu}, {cores}, {dev}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, stamped with machine, command and date."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    stamp = f"- command: `{command}`\n- machine: {machine()}\n- date: {datetime.date.today().isoformat()}\n"
    section = f"<!-- section:{name} -->\n## {name}\n\n{stamp}\n{body.rstrip()}\n<!-- end:{name} -->\n"
    text = REPORT.read_text() if REPORT.exists() else HEADER
    pattern = re.compile(rf"<!-- section:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    REPORT.write_text(text)
