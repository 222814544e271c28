"""The CPU thread count the command-line tools choose beside other busy processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcflow.threads import available_cores, choose_threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cores", "busy", "threads"),
    [(2, 0.0, 2), (2, 0.3, 2), (2, 1.0, 1), (2, 2.0, 1), (2, 3.5, 1), (16, 2.0, 14), (1, 0.9, 1)],
)
def test_threads_are_the_idle_cores_and_at_least_one(cores, busy, threads):
    assert choose_threads(cores, busy) == threads


def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import torch; from arcflow.threads import configure_cpu_threads; "
        "configure_cpu_threads(); print(torch.get_num_threads())"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc/stat")
def test_a_tool_started_beside_a_busy_process_takes_the_idle_cores():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = probe(env)
    finally:
        busy.kill()
        busy.wait()
    assert result.returncode == 0, result.stderr
    cores = available_cores()
    # At most the cores the busy loop leaves (fewer when other tests run beside this one).
    assert 1 <= int(result.stdout.split()[-1]) <= max(1, cores - 1)
    if cores > 1:
        assert "CPU cores busy" in result.stderr and "OMP_NUM_THREADS" in result.stderr


def test_omp_num_threads_is_obeyed():
    result = probe({**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1" and result.stderr == ""
