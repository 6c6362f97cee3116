"""The JSON API under ``/api/v1`` (flask-smorest), its OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Bearer tokens only (:mod:`billcore.api_tokens`): no session cookie, no CSRF; a token never logs anyone
into the HTML pages. Every error is an RFC 9457 problem (:mod:`.problems`); every write accepts an
``Idempotency-Key`` (:mod:`.idempotency`).
"""
from __future__ import annotations

from flask import Flask, request
from flask_smorest import Api as SmorestApi
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

from ..args import MAX_ID, RowIdConverter

from . import problems
from .schemas import ProblemSchema

API_TITLE = "billcore API"


class Api(SmorestApi):
    """flask-smorest's Api with problem details as the documented error shape, and error handlers on the
    API's requests only (the HTML pages keep theirs)."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self):  # noqa: D401 - see init_app below
        pass

    def _register_responses(self):
        import http

        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, problems.PROBLEM_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "A problem (RFC 9457)", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, problems.PROBLEM_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


def init_app(app: Flask) -> None:
    """Serve the API and its document; API errors as problems, HTML errors as before."""
    from ..security import csrf
    from . import views

    app.config.setdefault("API_TITLE", API_TITLE)
    app.config.setdefault("API_VERSION", "1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("API_SPEC_OPTIONS", {
        "info": {"description": "Accounts, payments, payment methods and auto-payments of billcore. "
                                "Authenticate with `Authorization: Bearer <token>`."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    })
    app.config.setdefault("IDEMPOTENCY_TTL_HOURS", 24)
    api = Api()  # one per app: its spec is the app's own
    api.init_app(app)
    api.register_converter(RowIdConverter, lambda _converter: {"type": "integer", "minimum": 1, "maximum": MAX_ID})
    api.register_blueprint(views.blp)
    csrf.exempt(views.blp)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if problems.is_api_request():
            return problems.from_http_exception(error)
        return error  # Flask's own page, as without the API

    @app.errorhandler(InternalServerError)
    def _server_error(error: InternalServerError):
        if problems.is_api_request():
            from . import idempotency

            app.logger.error("API error on %s", request.path, exc_info=error.original_exception)
            idempotency.mark_unhandled()
            if idempotency.can_retry():
                return problems.problem_response(500, "The server could not answer and nothing was changed. "
                                                      "Retry with the same Idempotency-Key.")
            return problems.problem_response(500, idempotency.FAILED_AFTER_WRITE, code="failed-after-write")
        return error
