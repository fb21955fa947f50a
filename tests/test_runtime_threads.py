"""llama.cpp's OpenMP threads wait passively unless the user chose otherwise (issue 18:
spinning threads made the default thread count 3x slower on a busy desktop)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LOAD_LLAMA = "import edge_embed.runtime.engine as engine; engine._llama_cpp()"


def openmp_settings(**env: str) -> str:
    """What libgomp itself says it uses (OMP_DISPLAY_ENV) once llama.cpp loaded. Its
    default spins 300000 times before sleeping; the passive policy makes that 0."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_LLAMA], capture_output=True, text=True, timeout=120,
        env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env},
    )
    assert result.returncode == 0, result.stderr
    if "OPENMP DISPLAY ENVIRONMENT" not in result.stderr:
        pytest.skip("this llama.cpp build does not use OpenMP")
    return result.stderr


def test_openmp_waits_passively_by_default():
    assert "GOMP_SPINCOUNT = '0'" in openmp_settings()


def test_the_users_own_policy_wins():
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in openmp_settings(OMP_WAIT_POLICY="ACTIVE")
    assert "GOMP_SPINCOUNT = '10000'" in openmp_settings(GOMP_SPINCOUNT="10000")
