"""Which replica answered, with which bundle: `x-replica` and `x-model-version` on every response.

Behind a load balancer, a mixed fleet (some replicas already on a new bundle, some not yet) is
visible from the responses alone. A plain ASGI middleware on the hot path: the replica's header
is encoded once, and a version's once per version.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REPLICA_HEADER = b"x-replica"
MODEL_VERSION_HEADER = b"x-model-version"


class ReplicaHeaders:
    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.replica = (REPLICA_HEADER, replica.encode("latin-1", "replace"))
        self._version: tuple[str | None, list[tuple[bytes, bytes]]] = (None, [])

    def _version_header(self, version: str | None) -> list[tuple[bytes, bytes]]:
        if version != self._version[0]:  # a new bundle: encode its name once
            encoded = [(MODEL_VERSION_HEADER, version.encode())] if version else []
            self._version = (version, encoded)
        return self._version[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_replica(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The bundle this request was answered from, else the one in service now.
                version = scope.get("state", {}).get("model_version")
                if version is None:
                    bundle = getattr(getattr(scope["app"].state, "service", None), "bundle", None)
                    version = bundle and bundle.version
                headers = [*message.get("headers", []), self.replica, *self._version_header(version)]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_replica)
