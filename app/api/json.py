"""JSON answers built from plain values, for the routes on the hot path.

Routes that answer many times a second return `json_response(...)` instead of pydantic models:
a model per listed item costs more on the event loop than the scoring of the whole request
(measured: README, Performance). The route keeps its `response_model`, so the OpenAPI page is
unchanged, and tests validate the answers against it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(document: Any, status_code: int = 200) -> Response:
    """`document` (dicts, lists, str, int, float, None) as an application/json response."""
    return Response(orjson.dumps(document), status_code, media_type="application/json")
