"""The shape of ``lookalike.index``: small modules, pure parts that load no FAISS, and an embedded store
whose schema is versioned, migrated from the release before versioning, and refused when newer."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import IndexFormatError
from lookalike.index import IndexSettings, Item

INDEX_PACKAGE = Path(__file__).parent.parent / "src" / "lookalike" / "index"
FIXTURES = Path(__file__).parent / "fixtures" / "indexes" / "2026-12"
MAX_LINES = 450


def test_no_index_module_is_over_450_lines() -> None:
    sizes = {
        str(path.relative_to(INDEX_PACKAGE)): len(path.read_text().splitlines()) for path in INDEX_PACKAGE.rglob("*.py")
    }
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


@pytest.mark.parametrize("module", ["lookalike.index.filters", "lookalike.index", "lookalike.index.backends"])
def test_the_pure_parts_load_no_faiss(module: str) -> None:
    """The API's request checks and a server-backend CLI import these; FAISS (and its OpenMP start-up) is only
    for the embedded backend."""
    code = f"import sys, {module}; print('faiss' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "False"


def test_embedded_index_is_still_importable_from_both_places() -> None:
    from lookalike.index import EmbeddedIndex as from_package
    from lookalike.index.embedded import EmbeddedIndex

    assert from_package is EmbeddedIndex


def _user_version(path: Path) -> int:
    with closing(sqlite3.connect(path / "index.sqlite")) as connection:
        return connection.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_store_records_the_schema_version(tmp_path: Path) -> None:
    from lookalike.index.embedded import SCHEMA_VERSION, EmbeddedIndex

    EmbeddedIndex.create(tmp_path / "i", IndexSettings(dim=4)).close()
    assert _user_version(tmp_path / "i") == SCHEMA_VERSION


def test_a_store_from_before_versioning_is_migrated_at_its_first_open(tmp_path: Path) -> None:
    """The fixture indexes were made by the release before the schema was versioned (user_version 0)."""
    from lookalike.index.embedded import SCHEMA_VERSION, EmbeddedIndex

    copy = tmp_path / "hnsw-cosine"
    shutil.copytree(FIXTURES / "hnsw-cosine", copy)
    assert _user_version(copy) == 0
    with EmbeddedIndex.open(copy) as index:
        count = index.count()
    assert _user_version(copy) == SCHEMA_VERSION
    with EmbeddedIndex.open(copy) as index:
        assert index.count() == count


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    from lookalike.index.embedded import SCHEMA_VERSION, EmbeddedIndex

    with EmbeddedIndex.create(tmp_path / "i", IndexSettings(dim=4, kind="exact")) as index:
        index.add([Item("a", np.ones(4, dtype=np.float32))])
    with closing(sqlite3.connect(tmp_path / "i" / "index.sqlite")) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(IndexFormatError, match=rf"schema version {SCHEMA_VERSION + 1}.*newer lookalike"):
        EmbeddedIndex.open(tmp_path / "i")
    assert _user_version(tmp_path / "i") == SCHEMA_VERSION + 1  # refused untouched


def test_the_planner_reads_its_flags_in_one_place() -> None:
    """Brute force when asked, over a plain flat index, while staging, or for a selective filter; the graph
    otherwise; a quantized re-scoring store re-checks more candidates than k."""
    from lookalike.index.embedded.planner import EXACT_SUBSET_FRACTION, STORE_RECHECK, plan

    hnsw = IndexSettings(dim=8)
    common = dict(staging=False, allowed=1000, total=1000, k=10)
    assert not plan(hnsw, exact=False, **common).brute
    assert plan(hnsw, exact=True, **common).brute
    assert plan(IndexSettings(dim=8, kind="exact"), exact=False, **common).brute
    assert plan(hnsw, exact=False, **(common | {"staging": True})).brute
    few = int(EXACT_SUBSET_FRACTION * 1000) - 1
    assert plan(hnsw, exact=False, **(common | {"allowed": few})).brute
    store = IndexSettings(dim=8, encoding="sq8", rerank_encoding="sq8")
    path = plan(store, exact=False, **common)
    assert path.rescore and path.k_brute == STORE_RECHECK * 10
    assert not plan(store, exact=False, **(common | {"staging": True})).rescore  # a float brute force is exact
