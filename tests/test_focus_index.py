"""The focus stage inside an index: chosen at creation, recorded in the model descriptor, applied to catalogue
and query images alike, and refused when a query would be made without it (or with another)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_photo
from typer.testing import CliRunner

from lookalike.catalog import check_model, open_catalog, open_or_create_catalog
from lookalike.errors import ModelMismatchError
from lookalike.focus import weights
from lookalike.ingest import ingest
from lookalike.search import search_image
from lookalike.sources import open_source


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(6):
        (folder / f"item-{seed}.jpg").write_bytes(make_photo(seed))
    return folder


def test_a_focused_index_records_and_reapplies_its_focus(
    tmp_path: Path, photos: Path, shipped: Path, lite0, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(weights.ENV_PATH, str(shipped))
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0", kind="exact", focus="object")
    recorded = catalog.index.settings.embedding
    assert recorded["focus"]["name"] == "u2netp" and recorded["focus"]["resolution"] == 160
    report = ingest(open_source(str(photos)), catalog.index, catalog.embedder, progress=False)
    assert report.indexed == 6 and not report.failed
    catalog.close()

    reopened = open_catalog(tmp_path / "index")
    assert reopened.embedder.focus is not None and reopened.embedder.descriptor()["focus"] == recorded["focus"]
    for seed in range(6):
        top = search_image(reopened, make_photo(seed), k=1).results[0]
        assert top.id == f"item-{seed}.jpg" and top.score > 0.99
    with pytest.raises(ModelMismatchError, match="focus"):
        check_model(recorded, lite0)  # the plain model would make other vectors
    reopened.close()


def test_a_plain_index_refuses_a_focused_model(tmp_path: Path, shipped: Path, lite0) -> None:
    from lookalike.focus import Focus

    catalog = open_or_create_catalog(tmp_path / "plain", "efficientnet-lite0", kind="exact")
    assert "focus" not in catalog.index.settings.embedding  # indexes made before focus existed look the same
    with pytest.raises(ModelMismatchError, match="focus"):
        check_model(catalog.index.settings.embedding, lite0.with_focus(Focus(shipped)))
    catalog.close()


def test_the_cli_builds_a_focused_index(
    tmp_path: Path, photos: Path, shipped: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike import cli

    runner = CliRunner()
    monkeypatch.setenv(weights.ENV_PATH, str(shipped))  # for the CLI and for reopening the index below
    env = {"LOOKALIKE_CACHE": str(cache_dir)}
    index = str(tmp_path / "cli-index")
    result = runner.invoke(
        cli.app, ["index", str(photos), "--index", index, "--focus", "object", "--focus-resolution", "128"], env=env
    )
    assert result.exit_code == 0, result.output
    assert open_catalog(index).index.settings.embedding["focus"]["resolution"] == 128
    result = runner.invoke(cli.app, ["index", str(photos), "--index", str(tmp_path / "x"), "--focus", "face"], env=env)
    assert result.exit_code != 0 and "focus must be one of none, object" in str(result.exception)
    result = runner.invoke(
        cli.app, ["index", str(photos), "--index", str(tmp_path / "y"), "--focus", "object", "--focus-precision", "fp8"]
    )
    assert result.exit_code != 0 and "focus precision must be fp32 or int8" in str(result.exception)


def test_a_focused_model_decodes_photos_at_twice_its_resize(shipped: Path, lite0) -> None:
    from lookalike.focus import Focus

    assert lite0.decode_min_side == lite0.preprocessing.resize
    assert lite0.with_focus(Focus(shipped)).decode_min_side == 2 * lite0.preprocessing.resize
