"""Reaching Milvus: pymilvus (an optional extra), one connection per index, and its failures as our errors.

An unreachable or overloaded server is a :class:`BackendUnavailableError` (a 503 through the API: the client did
nothing wrong); anything else Milvus refuses is an :class:`IndexError_` naming what was being done.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from lookalike.errors import BackendUnavailableError, IndexError_

try:
    with warnings.catch_warnings():
        # pymilvus 2.3 imports pkg_resources (setuptools warns on every import) and environs 9, which reads a
        # deprecated marshmallow attribute: nothing a user of lookalike can act on.
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from pymilvus import (  # noqa: F401  (the others are imported from here by index.py and reads.py)
            Collection,
            CollectionSchema,
            DataType,
            FieldSchema,
            connections,
            utility,
        )
        from pymilvus.exceptions import MilvusException
except ImportError as error:  # the optional extra is not installed
    _IMPORT_ERROR: ImportError | None = error
else:
    _IMPORT_ERROR = None


DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a connection (pass ``timeout=`` to create/open/exists to change it)."""

CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise IndexError_(
            f"bad Milvus index name {name!r}: use letters, digits and underscores, starting with a letter or"
            " underscore (at most 255)"
        )


def _consistency(connection: dict[str, Any]) -> str:
    level = connection.pop("consistency", "Session")
    if level not in CONSISTENCY_LEVELS:
        raise IndexError_(f"unknown consistency level {level!r}; choose one of {', '.join(CONSISTENCY_LEVELS)}")
    return level


def _connect(uri: str, connection: dict[str, Any]) -> str:
    """A connection of our own (a fresh alias), so closing one index never closes another's."""
    if _IMPORT_ERROR is not None:
        raise IndexError_(
            f"the Milvus backend needs pymilvus: pip install 'lookalike[milvus]' ({_IMPORT_ERROR})"
        ) from _IMPORT_ERROR
    alias = f"lookalike-{uuid.uuid4().hex}"
    options = {"timeout": DEFAULT_TIMEOUT, **connection}
    try:
        connections.connect(alias=alias, uri=uri, **options)
    except MilvusException as error:
        _disconnect(alias)
        raise BackendUnavailableError(f"cannot reach Milvus at {uri}: {error.message}") from error
    return alias


def _disconnect(alias: str) -> None:
    with suppress(Exception):  # closing is best effort
        connections.disconnect(alias)
        connections.remove_connection(alias)


@contextmanager
def _errors(action: str) -> Iterator[None]:
    """Milvus's failures as IndexError_ naming what was being done; an unreachable or overloaded server as
    BackendUnavailableError (a 503 through the API: the client did nothing wrong)."""
    try:
        yield
    except MilvusException as error:
        kind = BackendUnavailableError if _is_outage(error) else IndexError_
        raise kind(f"Milvus failed {action}: {error.message}") from error
    except Exception as error:  # raw gRPC errors escape pymilvus when the channel itself breaks
        if type(error).__module__.startswith("grpc"):
            raise BackendUnavailableError(f"Milvus failed {action}: {error}") from error
        raise


_OUTAGE_WORDS = ("unavailable", "deadline_exceeded", "deadline exceeded", "connection refused", "fail connecting")


def _is_outage(error: Exception) -> bool:
    """Whether a pymilvus error means the server is gone or overloaded, rather than a refused request."""
    if type(error).__name__ in ("MilvusUnavailableException", "ConnectError", "ConnectionNotExistException"):
        return True
    text = f"{getattr(error, 'message', '')} {error}".lower()
    return any(word in text for word in _OUTAGE_WORDS)
