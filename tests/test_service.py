"""The service layer every face calls (lookalike.service), and the command-line options that reach it: one
description of an index for ``lookalike info`` and ``GET /api/info``, one k limit, the HNSW and IVF settings,
``rebuild`` and ``--min-score``. In process (the model loads once), on one small catalogue."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from conftest import make_photo
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.catalog import open_catalog
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.errors import LookalikeError
from lookalike.index import IndexSettings
from lookalike.index.backends import IndexTarget
from lookalike.search import MAX_K, MAX_OFFSET, embed_query
from lookalike.service import add_one_item, check_limits, describe_index, rebuild_index, search

SERVER_ONLY = {"read_only", "display"}
"""What /api/info adds to the index's description: the server's own state."""
CLI_ONLY = {"location"}
"""What the command line adds: where the index lives (a public server does not say)."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def photos(workdir: Path) -> Path:
    root = workdir / "catalogue"
    for seed in range(12):
        folder = root / ("tops" if seed % 2 else "shoes")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item-{seed:02d}.jpg").write_bytes(make_photo(seed))
    return root


@pytest.fixture(scope="module")
def cli(cache_dir: Path, lite0) -> Any:
    runner = CliRunner()
    env = {"LOOKALIKE_CACHE": str(cache_dir)}

    def invoke(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args), env=env)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    return invoke


@pytest.fixture(scope="module")
def hnsw_index(cli: Any, photos: Path, workdir: Path) -> str:
    """An HNSW index made with non-default graph settings."""
    index = str(workdir / "hnsw")
    cli("index", str(photos), "--index", index, "--no-progress", "--hnsw-m", "8", "--ef-construction", "40")
    cli("index", str(photos), "--index", index, "--no-progress", "--ef-search", "16")  # existing: no change
    return index


def info_of(cli: Any, index: str) -> dict[str, Any]:
    return json.loads(cli("info", "--index", index, "--json").stdout)


def test_the_hnsw_options_reach_the_index(cli: Any, hnsw_index: str) -> None:
    info = info_of(cli, hnsw_index)
    assert info["kind"] == "hnsw" and info["hnsw"] == {"m": 8, "ef_construction": 40, "ef_search": 128}
    assert info["items"] == 12 and info["calibrated"] is True and info["notes"] == ["calibration"]
    assert info["focus"] is False and info["colour_weight"] == 0.0 and info["backend"] == "embedded"


def test_info_json_and_api_info_carry_the_same_fields(cli: Any, hnsw_index: str, workdir: Path) -> None:
    described = info_of(cli, hnsw_index)
    catalog = open_catalog(hnsw_index)
    try:
        settings = Settings(cache=workdir, api_key=None, cors_origins=["*"], url_allow=[])
        with TestClient(create_app(catalog, settings)) as client:
            served = client.get("/api/info").json()
        assert set(served) - SERVER_ONLY == set(described) - CLI_ONLY
        assert {key: served[key] for key in set(described) - CLI_ONLY} == {
            key: described[key] for key in set(described) - CLI_ONLY
        }
        assert served["read_only"] is True and "fields" in served["display"]
        assert describe_index(catalog) == describe_index(catalog.index)  # a catalogue and its index agree
    finally:
        catalog.close()
    text = cli("info", "--index", hnsw_index).stdout  # the same description, aligned
    assert all(re.search(rf"^ *{key}: ", text, re.M) for key in described)


def test_rebuild_changes_query_time_settings_the_structure_and_compacts(cli: Any, hnsw_index: str) -> None:
    result = cli("rebuild", "--index", hnsw_index, "--ef-search", "64")
    assert "rebuilt (ef_search=64); 12 items" in result.stdout
    assert info_of(cli, hnsw_index)["hnsw"] == {"m": 8, "ef_construction": 40, "ef_search": 64}

    cli("delete", "tops/item-01.jpg", "--index", hnsw_index)
    assert info_of(cli, hnsw_index)["dead_vectors"] == 1
    assert "rebuilt (compacted); 11 items" in cli("rebuild", "--index", hnsw_index).stdout
    assert info_of(cli, hnsw_index)["dead_vectors"] == 0

    ivf = json.loads(
        cli("rebuild", "--index", hnsw_index, "--kind", "ivf", "--ivf-lists", "2", "--nprobe", "2", "--json").stdout
    )
    assert (ivf["kind"], ivf["ivf"], ivf["items"]) == ("ivf", {"lists": 2, "nprobe": 2}, 11)
    assert "hnsw" not in ivf
    refused = cli("rebuild", "--index", hnsw_index, "--nprobe", "3", ok=False)  # more cells than the 2 lists
    assert refused.exit_code != 0 and "nprobe (3) cannot exceed ivf_lists (2)" in str(refused.exception)
    assert "rebuilt (kind=hnsw)" in cli("rebuild", "--index", hnsw_index, "--kind", "hnsw").stdout
    assert info_of(cli, hnsw_index)["kind"] == "hnsw"


def test_rebuild_refuses_what_it_cannot_change() -> None:
    server = IndexTarget("opensearch", Path("."), "http://127.0.0.1:9", "lookalike")  # never contacted
    with pytest.raises(LookalikeError, match="embedded backend"):
        rebuild_index(server, {"ef_search": 64})
    with pytest.raises(LookalikeError, match="cannot change metric"):
        rebuild_index(server, {"metric": "l2"})


def test_the_ivf_options_reach_a_new_index(cli: Any, photos: Path, workdir: Path) -> None:
    index = str(workdir / "ivf")
    cli("index", str(photos), "--index", index, "--no-progress", "--kind", "ivf", "--ivf-lists", "3", "--nprobe", "2")
    assert info_of(cli, index)["ivf"] == {"lists": 3, "nprobe": 2}


def test_search_min_score_and_one_k_limit(cli: Any, hnsw_index: str, photos: Path) -> None:
    query = str(photos / "shoes" / "item-00.jpg")
    every = json.loads(cli("search", query, "--index", hnsw_index, "-k", "10", "--json").stdout)["results"]
    scores = sorted({hit["score"] for hit in every}, reverse=True)
    middle = (scores[len(scores) // 2] + scores[len(scores) // 2 - 1]) / 2  # between two scores shown
    kept = json.loads(
        cli("search", query, "--index", hnsw_index, "-k", "10", "--min-score", str(middle), "--json").stdout
    )["results"]
    assert [hit["id"] for hit in kept] == [hit["id"] for hit in every if hit["score"] >= middle] and kept
    assert "0 results" in cli("search", query, "--index", hnsw_index, "--min-score", "1.01").stdout

    too_many = cli("search", query, "--index", hnsw_index, "-k", str(MAX_K + 1), ok=False)
    assert too_many.exit_code == 2
    for command in ("search", "eval"):
        params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
        assert {param.name: param.max for param in params if param.name == "k"} == {"k": MAX_K}
    for k, offset in ((0, 0), (MAX_K + 1, 0), (True, 0), (1, -1), (1, MAX_OFFSET + 1)):
        with pytest.raises(LookalikeError, match=r"(k|offset) must be"):
            check_limits(k, offset)


def test_the_index_defaults_are_the_settings_defaults() -> None:
    """The HNSW options default to the settings' own values, which the help names."""
    defaults = IndexSettings(dim=4)
    index = typer.main.get_command(app).commands["index"]  # type: ignore[attr-defined]
    helps = {param.name: param.help for param in index.params}
    for name in ("hnsw_m", "ef_construction", "ef_search"):
        assert f"[default: {getattr(defaults, name)}]" in helps[name]


def test_add_one_item_keeps_the_file_only_once_the_index_took_it(hnsw_index: str, workdir: Path) -> None:
    uploads = workdir / "uploads"
    catalog = open_catalog(hnsw_index)
    try:
        data = make_photo(99)
        query = embed_query(catalog, data)
        wrong = dataclasses.replace(query, vector=np.ones(3, dtype=np.float32))
        with pytest.raises(LookalikeError):  # a vector the index refuses: nothing is written
            add_one_item(catalog, data, "jpeg", wrong, uploads, "refused")
        assert not uploads.exists() or not any(uploads.iterdir())
        assert catalog.index.get("refused") is None

        first = add_one_item(catalog, data, "jpeg", query, uploads)  # id from the content hash
        assert first.id == first.content_hash and Path(first.location or "").is_file()
        named = add_one_item(catalog, data, "jpeg", query, uploads, "mine", {"label": "new"})
        other = make_photo(100)
        replaced = add_one_item(catalog, other, "jpeg", embed_query(catalog, other), uploads, "mine")
        assert not Path(named.location or "").exists() and Path(replaced.location or "").is_file()  # forgotten
        assert catalog.index.get("mine").content_hash == replaced.content_hash  # type: ignore[union-attr]

        found = search(catalog, "mine", 3, by_id=True)
        assert "mine" not in [hit.id for hit in found.results] and len(found.results) == 3
        assert found.next_offset == 3
    finally:
        catalog.close()
