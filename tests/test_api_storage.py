"""A catalogue in object storage: ingested from s3:// and served as signed links (moto on 127.0.0.1).

Only the standard AWS environment (``AWS_ENDPOINT_URL`` and credentials) points lookalike at the store, as
it would in a deployment.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import make_photo
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.catalog import open_or_create_catalog
from lookalike.config import Settings
from lookalike.ingest import ingest
from lookalike.sources import open_source

BUCKET = "lookalike-shop"


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    with pytest.MonkeyPatch.context() as env:
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for seed in range(6):
            client.put_object(Bucket=BUCKET, Key=f"catalogue/item-{seed}.jpg", Body=make_photo(seed))
        yield endpoint
        server.stop()


@pytest.fixture(scope="module")
def client(store: str, tmp_path_factory, lite0) -> Iterator[TestClient]:
    catalog = open_or_create_catalog(tmp_path_factory.mktemp("s3-index") / "index", "efficientnet-lite0")
    report = ingest(open_source(f"s3://{BUCKET}/catalogue/"), catalog.index, catalog.embedder, progress=False)
    assert (report.indexed, len(report.failed)) == (6, 0)
    yield TestClient(create_app(catalog, Settings()))
    catalog.close()


def test_items_keep_their_s3_location(client: TestClient) -> None:
    results = client.post("/api/search", files={"image": ("q.jpg", make_photo(3), "image/jpeg")}).json()["results"]
    assert results[0]["id"] == "item-3.jpg"


def test_images_in_object_storage_come_back_as_signed_links(client: TestClient, store: str) -> None:
    response = client.get("/api/images/item-2.jpg", follow_redirects=False)
    assert response.status_code == 307
    link = response.headers["location"]
    assert link.startswith(f"{store}/{BUCKET}/catalogue/item-2.jpg")
    query = parse_qs(urlsplit(link).query)
    assert "X-Amz-Signature" in query or "Signature" in query
    assert httpx.get(link).content == make_photo(2)


def test_thumbnails_of_stored_images_are_made_by_the_server(client: TestClient) -> None:
    response = client.get("/api/images/item-4.jpg?size=96")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(response.content)).size) <= 96
