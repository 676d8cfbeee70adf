"""The focus stage inside an index: chosen at creation, recorded in the model descriptor, applied to catalogue
and query images alike, and refused when a query would be made without it (or with another)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_photo
from typer.testing import CliRunner

from lookalike.catalog import check_model, open_catalog, open_or_create_catalog
from lookalike.config import get_settings
from lookalike.errors import ModelError, ModelMismatchError
from lookalike.focus import weights
from lookalike.ingest import ingest
from lookalike.search import search_image
from lookalike.sources import open_source

_USER_CACHE = get_settings().cache  # read at collection, before the run's cache fixture moves LOOKALIKE_CACHE


@pytest.fixture(scope="module")
def u2netp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return weights.u2netp_path(_USER_CACHE, download=False)  # what make install fetched
    except ModelError:
        pass
    try:
        return weights.u2netp_path(tmp_path_factory.mktemp("u2netp"))
    except ModelError as exc:
        pytest.skip(f"the U²-Net-p weights are not cached and cannot be downloaded here ({exc})")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(6):
        (folder / f"item-{seed}.jpg").write_bytes(make_photo(seed))
    return folder


def test_a_focused_index_records_and_reapplies_its_focus(
    tmp_path: Path, photos: Path, u2netp_file: Path, lite0, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(weights.ENV_PATH, str(u2netp_file))
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


def test_a_plain_index_refuses_a_focused_model(tmp_path: Path, u2netp_file: Path, lite0) -> None:
    from lookalike.focus import Focus

    catalog = open_or_create_catalog(tmp_path / "plain", "efficientnet-lite0", kind="exact")
    assert "focus" not in catalog.index.settings.embedding  # indexes made before focus existed look the same
    with pytest.raises(ModelMismatchError, match="focus"):
        check_model(catalog.index.settings.embedding, lite0.with_focus(Focus(u2netp_file)))
    catalog.close()


def test_the_cli_builds_a_focused_index(tmp_path: Path, photos: Path, u2netp_file: Path) -> None:
    from lookalike import cli

    runner = CliRunner()
    env = {weights.ENV_PATH: str(u2netp_file), "LOOKALIKE_CACHE": os.environ["LOOKALIKE_CACHE"]}
    index = str(tmp_path / "cli-index")
    result = runner.invoke(
        cli.app, ["index", str(photos), "--index", index, "--focus", "object", "--focus-resolution", "128"], env=env
    )
    assert result.exit_code == 0, result.output
    assert open_catalog(index).index.settings.embedding["focus"]["resolution"] == 128
    result = runner.invoke(cli.app, ["index", str(photos), "--index", str(tmp_path / "x"), "--focus", "face"], env=env)
    assert result.exit_code != 0 and "focus must be one of none, object" in str(result.exception)
