"""GET /metrics: Prometheus' text exposition (version 0.0.4).

Outside /v1, so the API's tokens do not apply: a Prometheus scraper usually has none.
It shows counts, pool usage and device names and generations, nothing secret and no
tenant's network; where that is still too much, VXGATE_METRICS_TOKEN makes the scraper
send `Authorization: Bearer <that token>` (Prometheus' `authorization` setting). The
admin token is deliberately not accepted: it must not sit in a scraper's configuration.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from provider_service import metrics, metrics_db
from provider_service.app import db
from provider_service.config import Settings
from provider_service.errors import Unauthorized

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def get_metrics() -> Response:
    settings: Settings = current_app.config["VXGATE_SETTINGS"]
    if settings.metrics_token:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), settings.metrics_token.encode()):
            raise Unauthorized("send 'Authorization: Bearer <metrics token>'")
    with db().read() as session:
        snapshot = metrics_db.read_snapshot(session)
    body = metrics.exposition(metrics_db.SnapshotCollector(snapshot))
    return Response(body, content_type=metrics.CONTENT_TYPE)
