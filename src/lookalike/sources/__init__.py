"""Catalogue sources: where the images to index come from (folders, buckets, manifests, data sets).

:func:`open_source` turns the one string a user types (``lookalike ingest SPEC``) into a
:class:`~lookalike.sources.base.Source`, so the CLI and API need not know the kinds of source.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from lookalike.errors import FetchError, SourceError
from lookalike.sources.base import Source, SourceItem
from lookalike.sources.datasets import (
    CLOTHING_ARCHIVE_URL,
    ClothingSource,
    clothing_dataset,
    find_clothing_dataset,
)
from lookalike.sources.feidegger import FEIDEGGER_JSON_URL, FeideggerSource
from lookalike.sources.fetch import AddressGuard, fetch_bytes
from lookalike.sources.folder import IMAGE_EXTENSIONS, FolderSource
from lookalike.sources.manifest import MANIFEST_SUFFIXES, ManifestSource, infer_value

__all__ = [
    "CLOTHING_ARCHIVE_URL",
    "FEIDEGGER_JSON_URL",
    "IMAGE_EXTENSIONS",
    "AddressGuard",
    "ClothingSource",
    "FeideggerSource",
    "FetchError",
    "FolderSource",
    "ManifestSource",
    "Source",
    "SourceError",
    "SourceItem",
    "clothing_dataset",
    "fetch_bytes",
    "find_clothing_dataset",
    "infer_value",
    "open_source",
]

FEIDEGGER_PREFIX = "feidegger:"


def _is_url(spec: str) -> bool:
    """``s3://...`` and friends, but not a Windows drive (``C:\\...``)."""
    return "://" in spec and len(urlsplit(spec).scheme) > 1


def open_source(spec: str, *, storage_options: dict[str, Any] | None = None) -> Source:
    """The source a spec names, checked in this order:

    * ``clothing``: the demo data set (found locally or downloaded, see :func:`clothing_dataset`);
    * ``feidegger:PATH_OR_URL``: a FEIDEGGER JSON file (``feidegger:`` alone uses the published one);
    * a name ending in ``.csv``, ``.jsonl`` or ``.json``: a manifest, local or at an fsspec/http(s) URL;
    * an existing local folder, or an fsspec URL prefix such as ``s3://bucket/prefix/``: a folder.

    Anything else raises :class:`SourceError` naming the spec.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("no source given: expected a folder, a manifest, an s3:// prefix or 'clothing'")
    if spec == "clothing":
        return clothing_dataset()
    if spec.startswith(FEIDEGGER_PREFIX):
        target = spec[len(FEIDEGGER_PREFIX) :].strip() or FEIDEGGER_JSON_URL
        return FeideggerSource(target, storage_options=storage_options)
    path_part = urlsplit(spec).path if _is_url(spec) else spec
    if path_part.lower().endswith(MANIFEST_SUFFIXES):
        return ManifestSource(spec, storage_options)
    if _is_url(spec):
        if urlsplit(spec).scheme.lower() in ("http", "https"):
            raise SourceError(f"cannot list {spec}: an http(s) URL must name a manifest (.csv, .jsonl or .json)")
        return FolderSource(spec, storage_options)
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        return FolderSource(expanded, storage_options)
    if os.path.exists(expanded):
        raise SourceError(f"unknown source {spec!r}: a file that is not a manifest (.csv, .jsonl or .json)")
    raise SourceError(
        f"unknown source {spec!r}: no such folder or manifest "
        "(expected a folder, a .csv/.jsonl/.json manifest, an s3:// prefix, 'clothing' or 'feidegger:...')"
    )
