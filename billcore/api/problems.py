"""RFC 9457 problem details: every error of the API in one shape (``application/problem+json``)."""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"
API_PREFIX = "/api/"


class Problem(Exception):
    """An error answered as problem details: ``status``, a short ``title``, a ``detail`` for this case,
    a ``code`` (the ``type`` is ``urn:billcore:problem:<code>``) and extension members."""

    def __init__(self, status: int, detail: str, *, code: str | None = None, title: str | None = None,
                 **extensions: Any):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code
        self.title = title or HTTPStatus(status).phrase
        self.extensions = extensions


def is_api_request() -> bool:
    """True for a request to the JSON API (its errors are problem details, never HTML pages)."""
    return request.path.startswith(API_PREFIX)


def problem_response(status: int, detail: str | None = None, *, code: str | None = None,
                     title: str | None = None, headers: dict[str, str] | None = None,
                     **extensions: Any) -> Response:
    """The response for one problem."""
    body: dict[str, Any] = {"type": f"urn:billcore:problem:{code}" if code else "about:blank",
                            "title": title or HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    response = current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                          mimetype=PROBLEM_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_problem(error: Problem) -> Response:
    """A raised :class:`Problem` as its response."""
    return problem_response(error.status, error.detail, code=error.code, title=error.title, **error.extensions)


def from_http_exception(error: HTTPException) -> Response:
    """A werkzeug/flask-smorest HTTP error as problem details; validation messages become ``errors``."""
    status = error.code or 500
    extensions: dict[str, Any] = {}
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if messages:
        extensions["errors"] = messages
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="billcore"'
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]  # a MethodNotAllowed
    detail = data.get("message") if isinstance(data, dict) and data.get("message") else error.description
    code = "validation" if messages else None
    return problem_response(status, detail, code=code, headers=headers, **extensions)
