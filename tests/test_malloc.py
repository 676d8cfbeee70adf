"""The arena cap is applied through glibc's mallopt, and a preset MALLOC_ARENA_MAX is left alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lookalike.malloc import limit_arenas


def test_a_preset_malloc_arena_max_wins(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_mallopt_accepts_the_cap_in_a_fresh_process() -> None:
    code = "import sys; from lookalike.malloc import limit_arenas; sys.exit(0 if limit_arenas(2) else 1)"
    env = {"PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
