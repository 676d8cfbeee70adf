"""One client call at a time, its failures as our errors: an unreachable or overloaded cluster is a
:class:`BackendUnavailableError` (a 503 through the API), a refusal an :class:`IndexError_` naming what was done."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lookalike.errors import BackendUnavailableError, IndexError_

try:
    from opensearchpy.exceptions import ConnectionError as _Unreachable
    from opensearchpy.exceptions import OpenSearchException as _ClientError
except ImportError:  # the extra is not installed: only an injected client can be used

    class _ClientError(Exception):  # type: ignore[no-redef]
        """Stands in for opensearch-py's errors when it is missing; nothing raises it."""

    _Unreachable = _ClientError  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from lookalike.index.opensearch.config import OpenSearchConfig


@contextmanager
def _connection(config: OpenSearchConfig, client: Any) -> Iterator[tuple[Any, bool]]:
    """The injected client, or a new one that is closed again if the block fails."""
    owns = client is None
    connection = config.connect() if owns else client
    try:
        yield connection, owns
    except BaseException:
        if owns:
            connection.close()
        raise


def _call(where: str, name: str, what: str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run one client call; client errors and error bodies (``ignore=404``) become one clear IndexError_."""
    try:
        response = method(**kwargs)
    except _ClientError as error:
        raise _client_failure(error, where, name, what) from error
    if isinstance(response, Mapping) and "error" in response and "status" in response:
        raise _server_failure(response["status"], response, where, name, what)
    return response


def _client_failure(error: Exception, where: str, name: str, what: str) -> IndexError_:
    if isinstance(error, _Unreachable):
        return BackendUnavailableError(
            f"cannot reach OpenSearch at {where} to {what} (index {name!r}): {error}. "
            "Is the server running, and are the URL's scheme (http/https) and port right?"
        )
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        return IndexError_(f"the OpenSearch client could not {what} on index {name!r} at {where}: {error}")
    return _server_failure(status, getattr(error, "info", None), where, name, what)


def _server_failure(status: int, info: Any, where: str, name: str, what: str) -> IndexError_:
    reason = _reason(info)
    if status in (429, 502, 503, 504):  # overloaded or restarting: the request itself may be fine (a 503 to ours)
        return BackendUnavailableError(
            f"OpenSearch at {where} is unavailable to {what} on index {name!r} (HTTP {status}): {reason}"
        )
    if status == 404 and "index_not_found" in reason:
        return IndexError_(
            f"no OpenSearch index {name!r} at {where} (build one with: lookalike index SOURCE --backend opensearch)"
        )
    hint = ""
    if status in (401, 403):
        hint = "; check the username and password (or the AWS credentials and the domain's access policy)"
    return IndexError_(f"OpenSearch at {where} refused to {what} on index {name!r} (HTTP {status}): {reason}{hint}")


def _reason(info: Any) -> str:
    """The most specific reason in an OpenSearch error body or bulk item."""
    if not isinstance(info, Mapping):
        return str(info)
    error = info.get("error", info)
    if not isinstance(error, Mapping):
        return str(error)
    cause = (error.get("root_cause") or [error])[0]
    return f"{cause.get('type', 'error')}: {cause.get('reason', error.get('reason', ''))}"
