"""Documented error answers shared by the routes (for the OpenAPI page)."""

from __future__ import annotations

from app.schemas import ErrorMessage

NOT_FOUND = {404: {"model": ErrorMessage, "description": "Unknown id"}}
UNAVAILABLE = {503: {"model": ErrorMessage, "description": "Not ready, or overloaded: retry later"}}
UNAUTHORIZED = {401: {"model": ErrorMessage, "description": "No valid bearer token (when one is required)"}}
