"""kanlab's OpenMP wait policy: idle torch threads sleep rather than spin (issue 18).

GNU OpenMP reports the settings it runs with when OMP_DISPLAY_ENV=VERBOSE; its spin count is the
independent reference here: 0 under PASSIVE, 300,000 by default, 3e10 under ACTIVE.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def openmp_spin_count(code: str, **env: str) -> str:
    """GOMP_SPINCOUNT as the OpenMP runtime torch loads reports it, after running code."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, "OMP_DISPLAY_ENV": "VERBOSE", **env},
                         capture_output=True, text=True, check=True, timeout=120)
    for line in out.stderr.splitlines():
        if "GOMP_SPINCOUNT" in line:
            return line.split("=")[1].strip().strip("'")
    pytest.skip("torch's OpenMP runtime does not report GOMP_SPINCOUNT (not GNU OpenMP)")


def test_importing_kanlab_before_torch_makes_idle_threads_sleep() -> None:
    assert openmp_spin_count("import torch") == "300000"  # OpenMP's own default: spin, then sleep
    assert openmp_spin_count("import kanlab, torch; torch.ones(3).sum()") == "0"
    assert openmp_spin_count("import kanlab.training.loop") == "0"  # any kanlab module: __init__ first


def test_a_users_own_wait_policy_is_kept() -> None:
    assert openmp_spin_count("import kanlab, torch", OMP_WAIT_POLICY="ACTIVE") == "30000000000"
    assert openmp_spin_count("import kanlab, torch", GOMP_SPINCOUNT="1000") == "1000"


def test_the_kanlab_command_runs_its_work_with_sleeping_threads() -> None:
    # python -m kanlab is the console script (kanlab._command); `kanlab list` imports torch
    assert openmp_spin_count("import sys; sys.argv = ['kanlab', 'list']; import runpy; "
                             "runpy.run_module('kanlab', run_name='__main__')") == "0"
