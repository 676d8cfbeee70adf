"""Every failure a client can cause becomes a 4xx with ``{"error": {"code", "message"}}``; none is a 500.

The mapping lives in one table, most specific class first, so the API and its tests agree on codes.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from lookalike import errors

STATUS_AND_CODE: list[tuple[type[Exception], int, str]] = [
    (errors.PayloadTooLargeError, 413, "too_large"),
    (errors.ImageError, 400, "bad_image"),
    (errors.BlockedURLError, 400, "blocked_url"),
    (errors.FetchError, 400, "fetch_failed"),
    (errors.NotFoundError, 404, "not_found"),
    (errors.FilterError, 400, "bad_filter"),
    (errors.ModelMismatchError, 409, "model_mismatch"),
    (errors.VectorSizeError, 400, "bad_vector"),
    (errors.BackendUnavailableError, 503, "backend_unavailable"),
    (errors.BusyError, 503, "busy"),
    (errors.NotCalibratedError, 409, "not_calibrated"),
    (errors.IndexRequestError, 400, "bad_request"),
    (errors.IndexFormatError, 500, "index_format"),
    (errors.IndexError_, 400, "bad_request"),
    (errors.LookalikeError, 400, "bad_request"),
]


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, reason: str | None = None
) -> JSONResponse:
    error = {"code": code, "message": message} | ({"reason": reason} if reason else {})
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _for_lookalike_error(_: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in STATUS_AND_CODE:
        if isinstance(exc, kind):
            # A 503 says when to come back, so well-behaved clients and proxies back off instead of hammering.
            retry = {"Retry-After": str(getattr(exc, "retry_after", 2))} if status == 503 else None
            return error_response(status, code, str(exc), retry, getattr(exc, "reason", None))
    return error_response(400, "bad_request", str(exc))


def _for_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return error_response(422, "bad_request", "; ".join(parts) or "invalid request")


def _for_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "read_only"}.get(
        exc.status_code, "bad_request"
    )
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code, headers=exc.headers
    )


def _for_client_disconnect(_: Request, exc: Exception) -> Response:
    """The client left mid-upload: nobody reads the answer, and it is not a server error worth a traceback."""
    return Response(status_code=499)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, _for_client_disconnect)
    app.add_exception_handler(errors.LookalikeError, _for_lookalike_error)
    app.add_exception_handler(RequestValidationError, _for_validation_error)
    app.add_exception_handler(StarletteHTTPException, _for_http_error)
