"""ManifestSource: CSV/JSONL/JSON rows, type inference, URL rows from a local server, S3 (moto)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import FetchError, SourceError
from lookalike.sources import AddressGuard, ManifestSource, infer_value, open_source


def _image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 5), color).save(buffer, format=fmt)
    return buffer.getvalue()


RED = _image("JPEG", (230, 10, 10))
GREEN = _image("PNG", (10, 230, 10))
BLUE = _image("PNG", (10, 10, 230))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("2e3", 2000.0),
        ("True", True),
        ("true", True),
        ("FALSE", False),
        ("false", False),
        (" 7 ", 7),
        ("007", "007"),
        ("01234", "01234"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("red", "red"),
        ("yes", "yes"),
        ("", ""),
    ],
)
def test_infer_value(text: str, value: object) -> None:
    result = infer_value(text)
    assert result == value
    assert type(result) is type(value)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "shop" / "img"
    folder.mkdir(parents=True)
    (folder / "red.jpg").write_bytes(RED)
    (folder / "green.png").write_bytes(GREEN)
    return tmp_path / "shop"


def test_csv_paths_metadata_types_and_relative_resolution(images: Path) -> None:
    manifest = images / "catalogue.csv"
    manifest.write_text(
        "id,path,label,price,stock,on_sale,note\n"
        "sku-1,img/red.jpg,dress,19.99,12,True,\n"
        ",img/green.png,shirt,5,0,false,only 1.5 left\n",
        encoding="utf-8",
    )
    items = list(ManifestSource(str(manifest)))
    assert [i.id for i in items] == ["sku-1", "img/green.png"]  # no id -> the path as written
    assert items[0].metadata == {"label": "dress", "price": 19.99, "stock": 12, "on_sale": True}
    assert items[1].metadata == {
        "label": "shirt",
        "price": 5,
        "stock": 0,
        "on_sale": False,
        "note": "only 1.5 left",
    }
    assert type(items[0].metadata["stock"]) is int
    assert items[0].location == str(images / "img" / "red.jpg")
    assert items[0].read() == RED
    assert items[1].read() == GREEN


def test_relative_paths_resolve_against_manifest_dir_not_cwd(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    sub = images / "lists"
    sub.mkdir()
    (sub / "m.csv").write_text("path\n../img/red.jpg\n", encoding="utf-8")
    (item,) = ManifestSource(str(sub / "m.csv"))
    assert item.id == "../img/red.jpg"
    assert item.location == str(images / "img" / "red.jpg")
    assert item.read() == RED


def test_csv_id_and_path_are_never_type_converted(images: Path) -> None:
    manifest = images / "m.csv"
    manifest.write_text("id,path,code\n1.50,img/red.jpg,007\n", encoding="utf-8")
    (item,) = ManifestSource(str(manifest))
    assert item.id == "1.50"
    assert item.metadata == {"code": "007"}


def test_json_list_keeps_json_types(images: Path) -> None:
    manifest = images / "m.json"
    rows = [
        {"id": 7, "path": "img/red.jpg", "price": "12", "tags": ["a", "b"], "kids": False, "gone": None},
        {"path": str(images / "img" / "green.png"), "rating": 4.5},
    ]
    manifest.write_text(json.dumps(rows), encoding="utf-8")
    items = list(ManifestSource(str(manifest)))
    assert items[0].id == "7"
    assert items[0].metadata == {"price": "12", "tags": ["a", "b"], "kids": False}  # "12" stays text
    assert items[1].id == str(images / "img" / "green.png")  # absolute path kept as written
    assert items[1].metadata == {"rating": 4.5}
    assert [i.read() for i in items] == [RED, GREEN]


def test_missing_path_or_url_names_row_number(images: Path) -> None:
    csv_manifest = images / "bad.csv"
    csv_manifest.write_text("path,label\nimg/red.jpg,a\n,b\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.csv row 2 \(line 3\).*'path' or 'url'"):
        ManifestSource(str(csv_manifest))
    jsonl = images / "bad.jsonl"
    jsonl.write_text('{"path": "img/red.jpg"}\n\n{"label": "x"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"row 2 \(line 3\).*'path' or 'url'"):
        ManifestSource(str(jsonl))
    json_manifest = images / "bad.json"
    json_manifest.write_text(json.dumps([{"path": "img/red.jpg"}, {"label": "x"}]), encoding="utf-8")
    with pytest.raises(SourceError, match=r"row 2 \(index 1\)"):
        ManifestSource(str(json_manifest))


def test_url_column_must_be_http(images: Path) -> None:
    manifest = images / "m.csv"
    manifest.write_text("url\nhttps://img.example/a.jpg\ns3://bucket/b.jpg\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"row 2 \(line 3\): url 's3://bucket/b.jpg' is not an http\(s\) URL"):
        ManifestSource(str(manifest))


def test_path_and_url_both_given_reads_path_keeps_url(images: Path) -> None:
    manifest = images / "m.csv"
    manifest.write_text("path,url\nimg/red.jpg,https://shop.example/red.jpg\n", encoding="utf-8")
    (item,) = ManifestSource(str(manifest))
    assert item.id == "img/red.jpg"
    assert item.metadata == {"url": "https://shop.example/red.jpg"}
    assert item.read() == RED


def test_duplicate_id_names_the_id(images: Path) -> None:
    manifest = images / "dup.csv"
    manifest.write_text("id,path\nsame,img/red.jpg\nother,img/green.png\nsame,img/green.png\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"duplicate id 'same'.*row 1"):
        ManifestSource(str(manifest))


def test_malformed_files(images: Path) -> None:
    (images / "broken.jsonl").write_text('{"path": "a.jpg"}\n{oops\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"line 2.*invalid JSON"):
        ManifestSource(str(images / "broken.jsonl"))
    (images / "object.json").write_text('{"path": "a.jpg"}', encoding="utf-8")
    with pytest.raises(SourceError, match="expected a JSON list"):
        ManifestSource(str(images / "object.json"))
    with pytest.raises(SourceError, match="manifest not found"):
        ManifestSource(str(images / "absent.csv"))
    with pytest.raises(SourceError, match="not a manifest"):
        ManifestSource(str(images / "img" / "red.jpg"))


def test_open_source_dispatches_manifests_and_rejects_unknown(images: Path, tmp_path: Path) -> None:
    (images / "m.jsonl").write_text('{"path": "img/red.jpg"}\n', encoding="utf-8")
    source = open_source(str(images / "m.jsonl"))
    assert isinstance(source, ManifestSource)
    assert [i.read() for i in source] == [RED]
    with pytest.raises(SourceError, match=r"unknown source .*nowhere"):
        open_source(str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="not a manifest"):
        open_source(str(images / "img" / "red.jpg"))


# --- url rows, served from 127.0.0.1 ---------------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    (root / "pics").mkdir(parents=True)
    (root / "pics" / "red.jpg").write_bytes(RED)
    (root / "pics" / "blue.png").write_bytes(BLUE)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def test_jsonl_url_rows_are_fetched(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text(
        json.dumps({"url": f"{base}/pics/red.jpg", "label": "dress", "price": 12})
        + "\n"
        + json.dumps({"id": "b", "url": f"{base}/pics/blue.png"})
        + "\n",
        encoding="utf-8",
    )
    items = list(ManifestSource(str(manifest)))
    assert [i.id for i in items] == [f"{base}/pics/red.jpg", "b"]  # no id -> the URL
    assert [i.location for i in items] == [f"{base}/pics/red.jpg", f"{base}/pics/blue.png"]
    assert items[0].metadata == {"label": "dress", "price": 12}
    assert items[0].read() == RED
    assert items[1].read() == BLUE


def test_url_row_errors_surface_at_read_time(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    manifest = tmp_path / "urls.csv"
    manifest.write_text(f"url\n{base}/pics/missing.jpg\n", encoding="utf-8")
    (item,) = ManifestSource(str(manifest))
    with pytest.raises(FetchError, match="404"):
        item.read()


def test_guard_applies_to_url_rows(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    manifest = tmp_path / "urls.csv"
    manifest.write_text(f"url\n{base}/pics/red.jpg\n", encoding="utf-8")
    (item,) = ManifestSource(str(manifest), guard=AddressGuard())
    with pytest.raises(FetchError, match="refusing"):
        item.read()
    (item,) = ManifestSource(str(manifest), guard=AddressGuard(allow=["127.0.0.1"]))
    assert item.read() == RED


def test_manifest_served_over_http_resolves_relative_paths_to_urls(served: tuple[str, Path]) -> None:
    base, root = served
    (root / "catalogue.csv").write_text("path,label\npics/red.jpg,dress\npics/blue.png,shirt\n", encoding="utf-8")
    source = open_source(f"{base}/catalogue.csv")
    assert [i.location for i in source] == [f"{base}/pics/red.jpg", f"{base}/pics/blue.png"]
    assert [i.read() for i in source] == [RED, BLUE]


# --- a manifest in S3 referencing S3 objects -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


def test_manifest_in_s3(s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="lookalike-manifest")
    client.put_object(Bucket="lookalike-manifest", Key="cat/img/red.jpg", Body=RED)
    client.put_object(Bucket="lookalike-manifest", Key="other/green.png", Body=GREEN)
    client.put_object(
        Bucket="lookalike-manifest",
        Key="cat/manifest.csv",
        Body=b"path,label\nimg/red.jpg,dress\ns3://lookalike-manifest/other/green.png,shirt\n",
    )
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    source = open_source("s3://lookalike-manifest/cat/manifest.csv", storage_options=options)
    items = list(source)
    assert [i.id for i in items] == ["img/red.jpg", "s3://lookalike-manifest/other/green.png"]
    assert [i.location for i in items] == [
        "s3://lookalike-manifest/cat/img/red.jpg",
        "s3://lookalike-manifest/other/green.png",
    ]
    assert [i.metadata for i in items] == [{"label": "dress"}, {"label": "shirt"}]
    assert [i.read() for i in items] == [RED, GREEN]
