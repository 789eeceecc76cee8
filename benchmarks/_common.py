"""What every benchmark script shares: `--json PATH` and `--smoke`, and one way to print and save figures.

Why: CI runs each script at `--smoke` size through the test suite (tests/test_benchmarks.py), so a
script that drifts from the code it measures fails there, not on the day someone wants a number. A
smoke run checks that the script works; its figures are not measurements. Figures are one flat JSON
object (numbers, strings, booleans), printed as a table and written with `--json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes (its description: `doc`'s first line)."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--json", default=None, help="write the figures as one flat JSON object")
    ap.add_argument("--smoke", action="store_true", help="the smallest size, seconds: a check that the script "
                                                          "runs (what CI does), not a measurement")
    return ap


def report(results: dict, json_path: str | None) -> dict:
    """Print `results` as a two-column table and, with `json_path`, write them (folders created)."""
    width = max([len(k) for k in results] + [6]) + 2
    print(f"{'metric':{width}s} value")
    for k, v in results.items():
        print(f"{k:{width}s} {v:.3f}" if isinstance(v, float) else f"{k:{width}s} {v}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    return results


def rss_mb() -> float:
    """The process's resident set now (VmRSS), in MiB; 0 where /proc is missing."""
    return _proc_status_mb("VmRSS:")


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark (VmHWM), in MiB."""
    found = _proc_status_mb("VmHWM:")
    if found:
        return found
    import resource  # not Linux: the same high-water mark from getrusage

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start the high-water mark again from the current resident set (Linux: write 5 to /proc/self/clear_refs);
    False where the kernel refuses, and the mark then keeps counting from the process's start."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_mb(field: str) -> float:
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0
