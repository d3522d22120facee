"""What every refused request must look like, whichever route refused it."""

from __future__ import annotations

import httpx

FORBIDDEN_IN_ERRORS = ("Traceback", 'File "', "/site-packages/", "/work/", "/tmp/")


def assert_clean_4xx(response: httpx.Response) -> None:
    """A 4xx status, a JSON `detail`, and nothing of the server's insides (tracebacks, paths)."""
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
    assert not any(leak in response.text for leak in FORBIDDEN_IN_ERRORS), response.text
