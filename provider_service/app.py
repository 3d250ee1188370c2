"""The Flask application factory (one app per gunicorn worker, one per test)."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from provider_service import request_log
from provider_service.auth import authenticate
from provider_service.config import Settings
from provider_service.db import Database
from provider_service.errors import ServiceError
from provider_service.validation import show

log = logging.getLogger(__name__)

# The largest legitimate body is restore-network: every VM of a network with its user
# data (CloudStack allows 1 MiB each, 32 KiB by default). CloudStack does not retry, so a
# refused restore would leave the network unrestored: be generous.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
_DB_KEY = "vxgate.db"


def create_app(settings: Settings | None = None, database: Database | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("provider_service")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config["VXGATE_SETTINGS"] = settings
    app.extensions[_DB_KEY] = database or Database(settings.database_url)

    from provider_service.api import register_blueprints

    register_blueprints(app)
    app.before_request(request_log.bind_request)  # first: a refused call's lines carry it
    app.before_request(authenticate)
    app.after_request(request_log.add_request_id)
    app.teardown_request(request_log.unbind_request)
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    return app


def db() -> Database:
    """The database of the app handling the current request."""
    database: Database = current_app.extensions[_DB_KEY]
    return database


def _service_error(error: ServiceError) -> ResponseReturnValue:
    return jsonify(error=str(error)), error.status


def _http_error(error: HTTPException) -> ResponseReturnValue:
    message = f"{error.name}: {request.method} {show(request.path)}"
    return jsonify(error=message), error.code or 500


def _unexpected_error(error: Exception) -> ResponseReturnValue:
    # The traceback goes to the service log, never to the client.
    log.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error=f"internal error ({type(error).__name__}); see the service log"), 500
