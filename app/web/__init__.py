"""The web page at `/`: find movies, rate them, see recommendations change, see the model.

Plain HTML, CSS and JavaScript, no build step and no third-party code: `index.html` at `/`, its
script and style sheet under `/web/`. The page calls only the public API, with URLs relative to
itself, so it keeps working behind a path prefix and doubles as an example of the API's use.

Only the files named in `ASSETS` are served (no directory is exposed). The page's Content
Security Policy allows this origin alone: the browser itself refuses any CDN, font or tracker,
so the page works on a machine without internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent
PAGE = "index.html"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _asset_route(name: str, media_type: str) -> None:
    async def asset() -> FileResponse:
        return FileResponse(WEB_DIR / name, media_type=media_type, headers=HEADERS)

    router.add_api_route(f"/web/{name}", asset, methods=["GET"], name=f"web:{name}")


for _name, _media_type in ASSETS.items():
    _asset_route(_name, _media_type)
