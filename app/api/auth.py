"""Bearer tokens: one dependency guards the write routes (API_TOKEN) and the admin route (ADMIN_TOKEN).

Only `Authorization: Bearer <token>` is accepted (the scheme case-insensitively, as RFC 7235
says); anything else is 401 with `WWW-Authenticate: Bearer`. Tokens are compared through their
SHA-256 digests with `hmac.compare_digest`, so the time taken says nothing about the token, its
length included. `create_app` adds the dependency to a router only when its token is set.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")


def require_bearer(token: SecretStr, setting: str) -> DependsParam:
    """A dependency that lets a request through only with `token` as its bearer token."""
    expected = hashlib.sha256(token.get_secret_value().encode()).digest()

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        offered = hashlib.sha256(credentials.credentials.encode() if credentials else b"").digest()
        if credentials is None or not hmac.compare_digest(offered, expected):
            challenge = "Bearer" if credentials is None else 'Bearer error="invalid_token"'
            raise HTTPException(
                401,
                f"send the {setting} as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": challenge},
            )

    return Depends(check)
