"""A folder of images, local or in object storage, as a catalogue source.

Listing goes through fsspec so that ``/data/shop``, ``s3://bucket/shop/`` (with s3fs) and any other
fsspec URL behave the same: same ids, same order, same metadata. That lets a catalogue move from a
laptop to a bucket without re-indexing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lookalike.errors import SourceError
from lookalike.sources.base import SourceItem

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class FsReader:
    """Reads one file through an fsspec filesystem.

    A small picklable object rather than a closure, so items can be handed to worker processes.
    """

    fs: Any
    path: str
    location: str

    def __call__(self) -> bytes:
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            raise SourceError(f"cannot read {self.location}: no such file") from None
        except Exception as exc:  # fsspec backends raise many unrelated types (OSError, botocore, ...)
            raise SourceError(f"cannot read {self.location}: {exc}") from exc


def url_to_fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs``, its errors (unknown protocol, missing s3fs, bad options) as SourceError."""
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        raise SourceError(f"cannot open {url}: {exc} (install the package it names)") from exc
    except Exception as exc:
        raise SourceError(f"cannot open {url}: {exc}") from exc


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFileSystem)


def location_of(fs: Any, path: str) -> str:
    """What a user would type to reach ``path``: a native absolute path locally, else the full URL."""
    if is_local(fs):
        return os.path.abspath(path)
    return fs.unstrip_protocol(path)


def _normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _is_hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


class FolderSource:
    """Every image file under ``root``, recursively, sorted by id.

    id: the path relative to ``root`` in posix form (``tops/red.jpg``); metadata: ``{"folder": "tops"}``
    for files in a subfolder (the first level, a natural label), else ``{}``. Hidden files and
    everything under hidden folders are skipped. The listing happens once, here, so ``len`` is known.
    """

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = root
        self.extensions = _normalise_extensions(extensions)
        self.fs, path = url_to_fs(root, storage_options)
        if is_local(self.fs):
            path = os.path.abspath(os.path.expanduser(path)).replace(os.sep, "/")
        self._root_path = path.rstrip("/") or "/"
        self._items = self._list()

    def _list(self) -> list[SourceItem]:
        try:
            is_dir = self.fs.isdir(self._root_path)
        except Exception as exc:
            raise SourceError(f"cannot read folder {self.root}: {exc}") from exc
        if not is_dir:
            if self.fs.exists(self._root_path):
                raise SourceError(f"not a folder: {self.root}")
            raise SourceError(f"folder not found: {self.root}")
        try:
            paths = self.fs.find(self._root_path, withdirs=False, detail=False)
        except Exception as exc:
            raise SourceError(f"cannot list folder {self.root}: {exc}") from exc

        prefix = self._root_path.rstrip("/") + "/"
        items: list[SourceItem] = []
        for path in paths:
            path = path.replace(os.sep, "/") if is_local(self.fs) else path
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix) :]
            if not relative or _is_hidden(relative):
                continue
            if os.path.splitext(relative)[1].lower() not in self.extensions:
                continue
            parts = relative.split("/")
            location = location_of(self.fs, path)
            items.append(
                SourceItem(
                    id=relative,
                    location=location,
                    read=FsReader(self.fs, path, location),
                    metadata={"folder": parts[0]} if len(parts) > 1 else {},
                )
            )
        items.sort(key=lambda item: item.id)
        return items

    def __iter__(self) -> Iterator[SourceItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FolderSource({self.root!r}, {len(self)} images)"
