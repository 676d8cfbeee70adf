"""Ingest: folder to index, bad images reported not fatal, re-runs resume, crashes lose nothing."""

from __future__ import annotations

import functools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_photo

from lookalike import ingest as ingest_module
from lookalike.catalog import check_model, open_catalog, open_or_create_catalog
from lookalike.errors import ModelMismatchError
from lookalike.ingest import ingest
from lookalike.search import search_image, search_item
from lookalike.sources import open_source


def add_bad_files(root: Path) -> None:
    (root / "broken.jpg").write_bytes(make_photo(99)[:600])  # truncated JPEG
    (root / "notes.jpg").write_text("this is not a picture")
    (root / "empty.png").write_bytes(b"")


def test_ingest_folder_skips_bad_images_and_reports_them(photo_folder: Path, tmp_path: Path, lite0) -> None:
    add_bad_files(photo_folder)
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact")
    report = ingest(open_source(str(photo_folder)), catalog.index, catalog.embedder, batch_size=5, progress=False)
    assert (report.total, report.indexed, report.unchanged) == (15, 12, 0)
    assert sorted(failure.id for failure in report.failed) == ["broken.jpg", "empty.png", "notes.jpg"]
    assert all(failure.reason for failure in report.failed)
    assert catalog.index.count() == 12
    item = catalog.index.get("tops/item-01.jpg")
    assert item is not None and item.metadata == {"folder": "tops"} and item.content_hash
    catalog.close()


BAR_COUNTS = re.compile(r"(\d+)/(\d+) \[[^]]*indexed=(\d+), unchanged=(\d+), failed=(\d+)\]")


def _bar_states(stderr: str) -> list[tuple[int, int, int, int, int]]:
    """(done, total, indexed, unchanged, failed) of every time the bar was drawn."""
    return [tuple(map(int, found.groups())) for found in BAR_COUNTS.finditer(stderr)]  # type: ignore[misc]


def test_the_progress_bar_shows_the_true_counts_at_every_refresh(
    photo_folder: Path, tmp_path: Path, lite0, capsys, monkeypatch
) -> None:
    """The bar is drawn on every update here: each time, its counts add up to the images done, and the last
    drawing is the report's (it used to show "ok=" a batch behind and end short of the last batch)."""
    add_bad_files(photo_folder)
    monkeypatch.setattr(ingest_module, "tqdm", functools.partial(ingest_module.tqdm, mininterval=0, miniters=1))
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact")
    source = open_source(str(photo_folder))
    report = ingest(source, catalog.index, catalog.embedder, batch_size=5, workers=1)
    states = _bar_states(capsys.readouterr().err)
    assert len(states) >= 4  # three failures one by one, then batches of five
    for done, total, indexed, unchanged, failed in states:
        assert total == 15 and done == indexed + unchanged + failed, states
    assert states[-1] == (15, 15, 12, 0, 3) == (report.total, report.total, report.indexed, 0, len(report.failed))

    (photo_folder / "shoes" / "item-00.jpg").write_bytes(make_photo(1234))  # a re-run: 11 unchanged, 1 changed
    report = ingest(source, catalog.index, catalog.embedder, batch_size=5, workers=1)
    states = _bar_states(capsys.readouterr().err)
    assert all(done == indexed + unchanged + failed for done, _, indexed, unchanged, failed in states), states
    assert states[-1] == (15, 15, 1, 11, 3) == (15, 15, report.indexed, report.unchanged, len(report.failed))
    catalog.close()


def test_an_empty_source_draws_no_bar(tmp_path: Path, lite0, capsys) -> None:
    (tmp_path / "empty").mkdir()
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact")
    report = ingest(open_source(str(tmp_path / "empty")), catalog.index, catalog.embedder)
    catalog.close()
    assert (report.total, report.indexed, report.failed) == (0, 0, [])
    assert capsys.readouterr().err == ""  # the CLI's one line says the folder holds no images


def test_ingest_stores_the_colour_of_the_crop_the_model_sees(photo_folder: Path, tmp_path: Path, lite0) -> None:
    """The descriptor comes from the embedder's crop of the one decode (the product on white with focus),
    which is what a query's colour is taken from too."""
    import numpy as np

    from lookalike import colour
    from lookalike.images import load_image

    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact")
    ingest(open_source(str(photo_folder)), catalog.index, catalog.embedder, progress=False)
    colours = catalog.index.colours([f"tops/item-{n:02d}.jpg" for n in (1, 3, 5)])
    for item_id, stored in colours.items():
        image = load_image((photo_folder / item_id).read_bytes(), min_side=catalog.embedder.decode_min_side)
        assert stored is not None and np.array_equal(stored, colour.describe(catalog.embedder.prepare(image)))
    catalog.close()


def test_rerun_skips_unchanged_and_reembeds_changed_files(photo_folder: Path, tmp_path: Path, lite0) -> None:
    index_path = tmp_path / "index"
    catalog = open_or_create_catalog(index_path, "efficientnet-lite0")
    ingest(open_source(str(photo_folder)), catalog.index, catalog.embedder, progress=False)
    catalog.close()

    (photo_folder / "shoes" / "item-00.jpg").write_bytes(make_photo(1234))
    catalog = open_catalog(index_path)
    report = ingest(open_source(str(photo_folder)), catalog.index, catalog.embedder, progress=False)
    assert (report.indexed, report.unchanged, catalog.index.count()) == (1, 11, 12)
    hits = search_image(catalog, make_photo(1234), k=1).results
    assert hits[0].id == "shoes/item-00.jpg" and hits[0].score > 0.99
    catalog.close()


def test_search_by_image_finds_itself_first_and_by_id_leaves_itself_out(photo_folder, tmp_path, lite0) -> None:
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0")
    ingest(open_source(str(photo_folder)), catalog.index, catalog.embedder, progress=False)
    response = search_image(catalog, (photo_folder / "tops" / "item-05.jpg").read_bytes(), k=3)
    assert response.results[0].id == "tops/item-05.jpg"
    assert response.model == "efficientnet-lite0"
    assert set(response.timings_ms) == {"decode", "embed", "search"}
    similar = search_item(catalog, "tops/item-05.jpg", k=4, filter={"folder": "shoes"})
    assert len(similar.results) == 4
    assert all(r.id != "tops/item-05.jpg" and r.metadata["folder"] == "shoes" for r in similar.results)
    catalog.close()


def test_a_different_model_is_refused(photo_folder, tmp_path, lite0) -> None:
    recorded = dict(lite0.descriptor(), model="resnet50", dim=2048)
    with pytest.raises(ModelMismatchError, match="resnet50"):
        check_model(recorded, lite0)
    recorded = dict(lite0.descriptor(), weights="0" * 16)
    with pytest.raises(ModelMismatchError, match="weights"):
        check_model(recorded, lite0)
    check_model(lite0.descriptor(), lite0)  # the same model passes


INGEST_SCRIPT = """
import sys
from lookalike.catalog import open_or_create_catalog
from lookalike.ingest import ingest
from lookalike.sources import open_source
catalog = open_or_create_catalog(sys.argv[2], "efficientnet-lite0")
report = ingest(open_source(sys.argv[1]), catalog.index, catalog.embedder, batch_size=4, progress=False,
                checkpoint_every=8)
catalog.close()
print(report.indexed, report.unchanged, len(report.failed))
"""


def _count(index_path: Path) -> int:
    try:
        with sqlite3.connect(index_path / "index.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_ingest_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path: Path, lite0, cache_dir) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for seed in range(160):
        (root / f"p{seed:03d}.jpg").write_bytes(make_photo(seed, size=(200, 260)))
    index_path = tmp_path / "index"
    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir))
    command = [sys.executable, "-c", INGEST_SCRIPT, str(root), str(index_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(index_path) < 20 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "ingest finished before it could be killed; make the catalogue larger"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = _count(index_path)
    assert 0 < done_before < 160

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    indexed, unchanged, failed = map(int, finished.stdout.split())
    assert unchanged == done_before and indexed == 160 - done_before and failed == 0

    catalog = open_catalog(index_path)
    assert catalog.index.count() == 160
    assert catalog.index.stats()["vectors_in_graph"] == 160 + 0  # no orphaned or doubled vectors
    hit = search_image(catalog, (root / "p077.jpg").read_bytes(), k=1).results[0]
    assert hit.id == "p077.jpg"
    catalog.close()
