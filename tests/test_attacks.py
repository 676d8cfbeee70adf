"""Resource attacks on a real ``lookalike serve`` process (tests/hostile/attacks.py): a memory-bounded server.

Goal: under each bomb the server's peak resident memory rises by at most 300 MB, ``/health`` answers within
1 s throughout, no request gets a 5xx (but the 503 ``busy`` of a full fetch or decode bound) or no answer at
all, and afterwards a good query is still answered correctly. One server (and one hostile HTTP peer on
127.0.0.2) serves the whole module; an attack that kills the server fails its test and the next starts anew.

Run them with ``pytest tests/test_attacks.py`` (one: ``'tests/test_attacks.py::test_attack[scan_bomb]'``);
``LOOKALIKE_ATTACKS_SRC=DIR`` runs the server from another source tree (the harness itself stays this one).
The server runs under a 10 GiB address-space limit (``LOOKALIKE_ATTACKS_AS_GIB``, 0 for none), so a bomb the
code does not stop ends in a MemoryError rather than exhausting the machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import attacks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID for the server's RSS")

AS_LIMIT_GIB = float(os.environ.get("LOOKALIKE_ATTACKS_AS_GIB", "10"))


@pytest.fixture(scope="module")
def attack_context(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[attacks.Context]:
    workdir = tmp_path_factory.mktemp("attacks")
    as_limit = int(AS_LIMIT_GIB * attacks.GIB) or None
    with attacks.environment(workdir, cache_dir, as_limit=as_limit) as context:
        yield context


def check(context: attacks.Context, name: str) -> attacks.AttackResult:
    result = attacks.run_attack(context, name)
    problems = attacks.verdict(result)
    summary = {key: value for key, value in result.to_dict().items() if key != "description"}
    assert not problems, f"{name}: " + "; ".join(problems) + f"\n{summary}"
    return result


@pytest.mark.parametrize("name", list(attacks.ATTACKS))
def test_attack(attack_context: attacks.Context, name: str) -> None:
    check(attack_context, name)


def test_attack_builders_are_what_they_claim() -> None:
    """The bombs are small on the wire and as large as claimed once opened (cheap checks, no server)."""
    import io
    import zlib

    from PIL import Image

    gzip_small = attacks.gzip_bomb.__wrapped__(128 * attacks.MB)
    assert zlib.decompress(gzip_small, 31) == bytes(128 * attacks.MB)
    assert len(attacks.gzip_bomb()) < 5 * attacks.MB and len(attacks.brotli_bomb()) < 4096
    import brotli

    assert brotli.decompress(attacks.brotli_bomb.__wrapped__(128 * attacks.MB)) == bytes(128 * attacks.MB)
    scans = attacks.scan_bomb_bytes()
    image = Image.open(io.BytesIO(scans))
    assert image.size == (6000, 6000) and image.info.get("progressive")
    assert scans.count(b"\xff\xda") > 3000 and 200_000 < len(scans) < 500_000
    tiff = Image.open(io.BytesIO(attacks.float_tiff_bytes()))
    assert (tiff.mode, tiff.size) == ("F", (8000, 5000)) and len(attacks.float_tiff_bytes()) < 400_000
