"""The demo clothing data set: finding it, reading it, downloading it (from a local server) into the cache."""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import SourceError
from lookalike.sources import ClothingSource, clothing_dataset, find_clothing_dataset, open_source
from lookalike.sources import datasets as datasets_module
from lookalike.sources.datasets import SAMPLE_DIR, sample_clothing_dataset

ROWS = [
    ("0a1b2c3d-0000-4000-8000-000000000001", "124", "T-Shirt", "False"),
    ("0a1b2c3d-0000-4000-8000-000000000002", "148", "Dress", "True"),
    ("0a1b2c3d-0000-4000-8000-000000000003", "7", "Shoes", "False"),
    ("0a1b2c3d-0000-4000-8000-000000000004", "9", "Hat", "True"),  # its image is missing
]
MISSING_ID = ROWS[3][0]


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, 255 - shade)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _csv_text() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "sender_id", "label", "kids"])
    writer.writerows(ROWS)
    return out.getvalue()


def _files() -> dict[str, bytes]:
    """Relative path -> bytes of a tiny clothing-dataset (plus one image no row mentions)."""
    files = {"images.csv": _csv_text().encode()}
    for shade, (image, *_rest) in enumerate(ROWS[:3]):
        files[f"images/{image}.jpg"] = _jpeg(40 * shade)
    files["images/ffffffff-unlisted.jpg"] = _jpeg(200)
    return files


def make_dataset(folder: Path) -> Path:
    for relative, data in _files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def make_zip(top: str = "clothing-dataset-master") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{top}/", "")
        zf.writestr(f"{top}/README.md", "# clothing")
        for relative, data in _files().items():
            zf.writestr(f"{top}/{relative}", data)
    return buffer.getvalue()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data set anywhere the finder looks (env, cwd, project checkout, default cache)."""
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setattr(datasets_module, "_PROJECT_ROOT", tmp_path / "project")
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


def _check_items(source: ClothingSource, root: Path) -> None:
    items = list(source)
    assert [i.id for i in items] == [r[0] for r in ROWS[:3]]
    assert source.missing == 1
    assert len(source) == 3
    assert MISSING_ID not in {i.id for i in items}
    first = items[0]
    assert first.location == str(root.resolve() / "images" / f"{first.id}.jpg")
    assert first.read() == (root / "images" / f"{first.id}.jpg").read_bytes()


def test_metadata_types(isolated: Path) -> None:
    root = make_dataset(isolated / "data" / "clothing-dataset")
    items = list(clothing_dataset(root))
    assert items[0].metadata == {"label": "T-Shirt", "kids": False, "sender_id": 124}
    assert items[1].metadata == {"label": "Dress", "kids": True, "sender_id": 148}
    for item in items:
        assert type(item.metadata["kids"]) is bool
        assert type(item.metadata["sender_id"]) is int
        assert type(item.metadata["label"]) is str


def test_found_via_data_dir(isolated: Path) -> None:
    root = make_dataset(isolated / "data" / "clothing-dataset")
    _check_items(clothing_dataset(root), root)
    _check_items(clothing_dataset(str(isolated / "data")), root)  # a folder holding clothing-dataset/
    assert find_clothing_dataset(root) == root.resolve()


def test_found_via_env(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dataset(isolated / "data" / "clothing-dataset")
    assert find_clothing_dataset() is None
    monkeypatch.setenv("LOOKALIKE_DATA", str(root))
    _check_items(clothing_dataset(), root)
    monkeypatch.setenv("LOOKALIKE_DATA", str(isolated / "data"))
    assert find_clothing_dataset() == root.resolve()
    source = open_source("clothing")
    assert isinstance(source, ClothingSource)
    assert len(source) == 3


def test_found_relative_to_cwd(isolated: Path) -> None:
    root = make_dataset(isolated / "work" / "shared" / "datasets" / "clothing-dataset")
    assert find_clothing_dataset() == root.resolve()


def test_explicit_data_dir_without_data_set_is_an_error(isolated: Path) -> None:
    with pytest.raises(SourceError, match=r"no clothing data set at .*empty"):
        clothing_dataset(isolated / "empty")


def test_bad_csv_row_is_reported(isolated: Path) -> None:
    root = make_dataset(isolated / "data" / "clothing-dataset")
    with (root / "images.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"{ROWS[0][0]},1,Hat,False\n")
    with pytest.raises(SourceError, match=rf"row 5: duplicate image id '{ROWS[0][0]}'"):
        clothing_dataset(root)
    (root / "images.csv").write_text(_csv_text().replace(",7,Shoes,False", ",seven,Shoes,maybe"))
    with pytest.raises(SourceError, match="row 3: expected kids True/False and an integer sender_id"):
        clothing_dataset(root)


# --- download from a local server -------------------------------------------------------------------------


class ArchiveServer:
    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(self.path)
                body = server.routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def archive_server() -> Iterator[ArchiveServer]:
    server = ArchiveServer()
    threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_download_extracts_into_cache_then_reuses_it(isolated: Path, archive_server: ArchiveServer) -> None:
    archive_server.routes["/master.zip"] = make_zip()
    url = f"{archive_server.base}/master.zip"
    cache = isolated / "cache"
    source = clothing_dataset(download_url=url, cache_dir=cache)
    target = cache / "datasets" / "clothing-dataset"
    assert (target / "images.csv").is_file()
    assert (target / "README.md").is_file()
    _check_items(source, target)
    assert archive_server.hits == ["/master.zip"]
    # nothing left behind but the data set
    assert [p.name for p in (cache / "datasets").iterdir()] == ["clothing-dataset"]

    assert find_clothing_dataset(cache_dir=cache) == target.resolve()
    again = clothing_dataset(download_url=url, cache_dir=cache)
    assert len(again) == 3
    assert archive_server.hits == ["/master.zip"]  # not downloaded twice


def test_download_handles_any_single_top_folder(isolated: Path, archive_server: ArchiveServer) -> None:
    archive_server.routes["/other.zip"] = make_zip(top="clothing-dataset-main")
    source = clothing_dataset(download_url=f"{archive_server.base}/other.zip", cache_dir=isolated / "cache")
    assert len(source) == 3


def test_download_uses_lookalike_cache_env(isolated: Path, archive_server: ArchiveServer) -> None:
    archive_server.routes["/master.zip"] = make_zip()
    clothing_dataset(download_url=f"{archive_server.base}/master.zip")
    assert (isolated / "default-cache" / "datasets" / "clothing-dataset" / "images.csv").is_file()


def test_failing_download_names_url_and_leaves_no_debris(isolated: Path, archive_server: ArchiveServer) -> None:
    url = f"{archive_server.base}/gone.zip"
    with pytest.raises(SourceError, match=rf"{re.escape(url)}.*404.*LOOKALIKE_DATA"):
        clothing_dataset(download_url=url, cache_dir=isolated / "cache", fallback=False)
    assert list((isolated / "cache" / "datasets").iterdir()) == []


def test_download_that_is_not_a_zip(isolated: Path, archive_server: ArchiveServer) -> None:
    archive_server.routes["/fake.zip"] = b"<html>rate limited</html>"
    url = f"{archive_server.base}/fake.zip"
    with pytest.raises(SourceError, match=rf"{re.escape(url)} is not a usable zip"):
        clothing_dataset(download_url=url, cache_dir=isolated / "cache", fallback=False)
    assert find_clothing_dataset(cache_dir=isolated / "cache") is None


def _refusing_url() -> str:
    """An http URL on 127.0.0.1 at a port nobody listens on: a connection there is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/master.zip"


def test_unreachable_download(isolated: Path) -> None:
    url = _refusing_url()
    with pytest.raises(SourceError, match=rf"cannot download the clothing data set from {re.escape(url)}"):
        clothing_dataset(download_url=url, cache_dir=isolated / "cache", fallback=False)


# --- the sample catalogue in the package, the fallback when there is no data set and no network -------------

SAMPLE_COUNT = 300
SAMPLE_MAX_BYTES = 5_000_000
SAMPLE_MAX_SIDE = 320
LEFT_OUT_LABELS = {"Not sure", "Skip", "Other"}


def test_fallback_to_the_sample_when_nothing_is_found_and_the_download_fails(
    isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    url = _refusing_url()
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="lookalike.sources.datasets"):
        source = clothing_dataset(download_url=url, cache_dir=isolated / "cache")
    assert time.monotonic() - started < 5  # a refused connection: no waiting for a timeout
    assert source.root == SAMPLE_DIR.resolve()
    assert len(source) == SAMPLE_COUNT
    [record] = [r for r in caplog.records if r.name == "lookalike.sources.datasets"]
    message = record.getMessage()
    assert record.levelname == "WARNING" and "\n" not in message  # one line
    for part in ("SAMPLE catalogue", str(SAMPLE_DIR), url, "LOOKALIKE_DATA", "with internet"):
        assert part in message
    assert "download it yourself" not in message  # the download's own hint is replaced by the warning's
    assert find_clothing_dataset(cache_dir=isolated / "cache") is None  # the sample is not the data set


def test_open_source_clothing_falls_back_through_the_default_url(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What `lookalike index clothing` does offline: the default URL fails, the sample is used."""
    import functools

    import lookalike.sources

    url = _refusing_url()
    monkeypatch.setattr(lookalike.sources, "clothing_dataset", functools.partial(clothing_dataset, download_url=url))
    with caplog.at_level("WARNING", logger="lookalike.sources.datasets"):
        source = open_source("clothing")
    assert isinstance(source, ClothingSource) and source.root == SAMPLE_DIR.resolve()
    assert "SAMPLE" in caplog.text


def test_the_full_data_set_wins_over_the_sample(isolated: Path, archive_server: ArchiveServer) -> None:
    archive_server.routes["/master.zip"] = make_zip()
    source = clothing_dataset(download_url=f"{archive_server.base}/master.zip")  # downloadable: downloaded
    assert source.root != SAMPLE_DIR.resolve() and len(source) == 3
    root = make_dataset(isolated / "data" / "clothing-dataset")
    assert clothing_dataset(root).root == root.resolve()  # found: used, no download, no sample


def test_the_sample_is_well_formed() -> None:
    from collections import Counter

    with (SAMPLE_DIR / "images.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "sender_id", "label", "kids"]  # the full set's format
        rows = list(reader)
    files = {p.name for p in (SAMPLE_DIR / "images").iterdir()}
    assert len(rows) == SAMPLE_COUNT
    assert files == {f"{row['image']}.jpg" for row in rows}  # every row has its file, and no file is extra
    source = sample_clothing_dataset()
    assert len(source) == SAMPLE_COUNT and source.missing == 0
    labels = Counter(item.metadata["label"] for item in source)
    assert len(labels) == 17 and not set(labels) & LEFT_OUT_LABELS
    assert min(labels.values()) >= 10
    assert len({item.metadata["sender_id"] for item in source}) >= 50
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total <= SAMPLE_MAX_BYTES
    for item in source:
        with Image.open(item.location) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert max(image.size) == SAMPLE_MAX_SIDE
            assert not image.getexif()  # metadata stripped
    license_text = (SAMPLE_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "CC0 1.0 Universal" in license_text
    readme = (SAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    assert "alexeygrigorev/clothing-dataset" in readme and "scripts/make-sample-catalogue.py" in readme


def test_the_sample_is_a_subset_of_the_full_data_set() -> None:
    """Same ids, same metadata as the full set's rows: an index built on the sample grows into the full one."""
    if not (REAL / "images.csv").is_file():
        pytest.skip("the shared clothing data set is not here")
    with (REAL / "images.csv").open(encoding="utf-8", newline="") as handle:
        full = {row["image"]: row for row in csv.DictReader(handle)}
    with (SAMPLE_DIR / "images.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            assert full[row["image"]] == row


def test_the_sample_script_is_reproducible(tmp_path: Path) -> None:
    """The committed sample is what scripts/make-sample-catalogue.py makes from the full data set."""
    if not (REAL / "images.csv").is_file():
        pytest.skip("the shared clothing data set is not here")
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "make-sample-catalogue.py"
    out = tmp_path / "sample"
    subprocess.run([sys.executable, str(script), "--source", str(REAL), "--out", str(out)], check=True)
    made = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(SAMPLE_DIR) for p in SAMPLE_DIR.rglob("*") if p.is_file())
    for relative in made:
        assert (out / relative).read_bytes() == (SAMPLE_DIR / relative).read_bytes(), relative


def test_indexing_the_sample(tmp_path: Path, lite0) -> None:
    from lookalike.catalog import open_or_create_catalog
    from lookalike.ingest import ingest
    from lookalike.search import search_image

    source = sample_clothing_dataset()
    catalog = open_or_create_catalog(tmp_path / "index", "efficientnet-lite0")
    try:
        report = ingest(source, catalog.index, catalog.embedder, progress=False)
        assert (report.total, report.indexed, len(report.failed)) == (SAMPLE_COUNT, SAMPLE_COUNT, 0)
        assert catalog.index.count() == SAMPLE_COUNT
        dress = next(item for item in source if item.metadata["label"] == "Dress")  # examples/demo_search.py's
        response = search_image(catalog, dress.read(), k=5)
        assert response.results[0].id == dress.id
        assert response.results[0].metadata["label"] == "Dress"
    finally:
        catalog.close()


# --- the real data set, when this checkout sits next to it ------------------------------------------------

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "clothing-dataset"


@pytest.mark.skipif(not (REAL / "images.csv").is_file(), reason="the shared clothing data set is not here")
def test_real_clothing_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    found = find_clothing_dataset()
    assert found == REAL.resolve()
    with (REAL / "images.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    present = set(os.listdir(REAL / "images"))
    with_files = sum(1 for row in rows if f"{row['image']}.jpg" in present)
    source = clothing_dataset()
    assert len(rows) == 5403
    assert len(source) == with_files == 5398
    assert source.missing == 5403 - 5398
    labels = {item.metadata["label"] for item in source}
    assert len(labels) == 20
