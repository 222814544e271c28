"""How many CPU threads torch uses when other processes already keep cores busy.

Measured on a 2-core machine (docs/training.md, Threads): with a distillation running, a tiny
inference started beside it with torch's default (one thread per core) took 81.6 s and slowed the
distillation to 2.6 s an iteration (1.15 s alone); with one thread it took 44.9 s and the
distillation ran at 2.2 s. Threads that wait for a core another process holds stall every
parallel region of both processes. ``OMP_WAIT_POLICY=PASSIVE`` helped less (19.4 s against 16.4 s
with one thread in a shorter run) and made a run alone 30 % slower, so it is not the default.

The command-line tools therefore look at the machine when they start: if other processes keep
cores busy, torch gets the idle cores only (at least one), and the tool says so in one line.
``OMP_NUM_THREADS`` set by the user (or by torchrun) is always obeyed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_PROC_STAT = Path("/proc/stat")
_SELF_STAT = Path("/proc/self/stat")
# clock ticks per second of /proc's CPU times
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_ticks() -> tuple[int, int] | None:
    """``(busy, total)`` CPU ticks of the whole machine since boot (Linux), or None."""
    try:
        fields = [int(v) for v in _PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_ticks() -> int:
    """CPU ticks this process (all its threads) has used."""
    try:
        fields = _SELF_STAT.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def cores_busy_elsewhere(interval: float = 0.2) -> float:
    """Cores that other processes keep busy, averaged over ``interval`` seconds (0 off Linux)."""
    start, own_start = _machine_busy_ticks(), _own_ticks()
    if start is None:
        return 0.0
    time.sleep(interval)
    end, own_end = _machine_busy_ticks(), _own_ticks()
    busy = (end[0] - start[0]) - (own_end - own_start)
    return max(busy / _TICKS / interval, 0.0)


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def choose_threads(cores: int, busy_elsewhere: float) -> int:
    """One thread per core that no other process keeps busy, at least one."""
    return max(1, min(cores, round(cores - busy_elsewhere)))


def configure_cpu_threads(announce: bool = True) -> int | None:
    """Give torch the cores other processes leave idle; returns the thread count set (None when
    ``OMP_NUM_THREADS`` decides, or torch is not imported by the tool)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    cores = available_cores()
    busy = cores_busy_elsewhere()
    threads = choose_threads(cores, busy)
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
        if announce and os.environ.get("RANK", "0") == "0":
            print(
                f"other processes keep ~{busy:.1f} of {cores} CPU cores busy: torch uses "
                f"{threads} thread(s) (set OMP_NUM_THREADS to choose)",
                file=sys.stderr,
            )
    return threads
