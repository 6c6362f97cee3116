"""The JSON API under ``/api/v1`` (flask-smorest), its OpenAPI 3.1 document at ``/api/v1/openapi.json``.

Bearer tokens only (:mod:`billcore.api_tokens`): no session cookie, no CSRF; a token never logs anyone
into the HTML pages. Every error is an RFC 9457 problem (:mod:`.problems`); every write accepts an
``Idempotency-Key`` (:mod:`.idempotency`).
"""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask, request
from flask_smorest import Api as SmorestApi
from flask_smorest.spec import openapi_cli
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

from ..args import MAX_ID, RowIdConverter

from . import problems
from .schemas import ProblemSchema

API_TITLE = "billcore API"


class Api(SmorestApi):
    """flask-smorest's Api with problem details as the documented error shape, error handlers on the
    API's requests only (the HTML pages keep theirs), and an OpenAPI document built when first read.

    flask-smorest builds the document while the app is created: half of the 60 ms an app takes, paid by
    every worker and CLI command (and by every test) although only ``/api/v1/openapi.json`` and
    ``flask openapi`` read it. Here the routes are registered with Flask at once, as usual, and their
    documentation the first time ``spec`` is read, from the same calls flask-smorest would have made.
    """

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, app: Flask | None = None, **kwargs: Any) -> None:
        self._built_spec: Any = None
        self._spec_arguments: dict[str, Any] | None = None
        self._undocumented: list[tuple[Any, str, Any]] = []
        self._spec_ready = False
        self._spec_building = False
        self._spec_lock = threading.RLock()  # the building thread reads ``spec`` itself
        super().__init__(app, **kwargs)

    @property
    def spec(self) -> Any:
        """The OpenAPI document (``apispec.APISpec``), built on first use; other threads wait for it."""
        if not self._spec_ready and self._spec_arguments is not None:
            with self._spec_lock:
                if not self._spec_ready and not self._spec_building:
                    self._spec_building = True
                    try:
                        self._build_spec()
                        self._spec_ready = True
                    finally:
                        self._spec_building = False
        return self._built_spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._built_spec = value

    def _init_spec(self, **kwargs: Any) -> None:
        # called by init_app: keep the arguments; the CLI group is the one thing needed at once
        self._spec_arguments = kwargs
        self._app.cli.add_command(openapi_cli)

    def _build_spec(self) -> None:
        super()._init_spec(**(self._spec_arguments or {}))  # sets self.spec; converters, fields, responses
        for blueprint, name, parameters in self._undocumented:
            blueprint.register_views_in_doc(self, self._app, self._built_spec, name=name, parameters=parameters)
            self._built_spec.tag({"name": name, "description": blueprint.description})
        self._undocumented.clear()

    def register_converter(self, converter: Any, func: Any) -> None:
        """As flask-smorest's; until the document is built, only remembered."""
        if not self._spec_ready:
            self._converters.append((converter, func))
        else:
            super().register_converter(converter, func)

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """Register the blueprint with the app now and document its views when the document is built."""
        if self._spec_ready:
            super().register_blueprint(blp, parameters=parameters, **options)
            return
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

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
