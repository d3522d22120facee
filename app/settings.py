"""Server settings, read from the environment (and a `.env` file) by pydantic-settings."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """Where the feedback store lives: read the same way by the server and by training."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    state_dir: Path = Field(
        Path("state"), description="folder of the SQLite feedback database (used without DATABASE_URL)"
    )
    database_url: str | None = Field(
        None,
        description="postgresql://user:password@host:port/database to store feedback in PostgreSQL; "
        "unset: SQLite, STATE_DIR/feedback.db",
    )
    database_timeout_s: float = Field(
        2.0, gt=0, le=60, description="longest a database call may take before it fails (503 for writes)"
    )
    database_check_interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often the database is checked while nothing else reaches it"
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value:  # empty counts as unset
            from app.feedback.db import async_url

            async_url(value)  # raises ValueError with the accepted forms
        return value or None

    def feedback_database_url(self) -> str:
        """`DATABASE_URL`, else the SQLite file under `STATE_DIR`."""
        from app.feedback.db import sqlite_path, sqlite_url

        return self.database_url or sqlite_url(sqlite_path(self.state_dir))


class Settings(DatabaseSettings):
    """Every knob of the server; each one is the environment variable of the same name."""

    model_dir: Path = Field(Path("models"), description="folder whose `current` bundle is served")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    log_level: str = Field("info", description="debug, info, warning or error")
    batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="how long a batch waits for more requests once one arrived (less, with the model "
        "idle, once as many wait as the recent batches took)",
    )
    batch_max_users: int = Field(64, ge=1, description="most users scored in one model call")
    batch_max_requests: int = Field(64, ge=1, description="most /predict requests merged in one call")
    max_queue: int = Field(
        2048, ge=1, description="queued recommendation requests (a user each) beyond which new ones get 503"
    )
    batch_max_pairs: int = Field(
        20_000, ge=1, description="most pairs scored in one /predict model call (a larger request alone)"
    )
    max_queued_pairs: int = Field(
        500_000, ge=1, description="queued /predict pairs beyond which new requests get 503 with Retry-After"
    )
    predict_max_pairs: int = Field(10_000, ge=1, description="most pairs in one /predict request")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, description="request bodies above this size get 413 before being read"
    )
    max_inflight_body_bytes: int = Field(
        64_000_000,
        ge=1024,
        description="request body bytes received and not yet answered, all requests together, beyond "
        "which a body gets 503 with Retry-After",
    )
    request_timeout_s: float = Field(
        5.0, gt=0, description="longest a request may take once received whole; then 503 with Retry-After"
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="server processes on one port, each with its own model, batchers, swaps and metrics",
    )
    compute_threads: int = Field(
        1, ge=1, description="threads each of TensorFlow's and BLAS's pools may use per model call"
    )
    reload_interval_s: float = Field(
        5.0, ge=0, description="how often `current` is checked for a new bundle; 0 turns it off"
    )
    admin_token: SecretStr | None = Field(
        None, description="enables POST /admin/reload for callers that send it as a bearer token"
    )
    api_token: SecretStr | None = Field(
        None, description="when set, every write route needs it as a bearer token; unset, writes are open"
    )
    allow_anonymous_writes: bool = Field(
        False, description="allow open writes (no API_TOKEN) while listening beyond loopback"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS; none (no CORS headers) by default"
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="on SIGTERM, the longest from the signal to the exit: requests received are answered",
    )
    max_connections: int = Field(
        2048, ge=16, description="open connections per process; past it the longest-waiting one is evicted"
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, le=1_048_576, description="request line and headers together; larger gets 431"
    )
    timeout_keep_alive_s: float = Field(
        5.0,
        gt=0,
        description="an idle connection (before its first request, or between two) is closed after this",
    )
    timeout_headers_s: float = Field(
        10.0, gt=0, description="a request's line and headers must arrive within this of its first byte (408)"
    )
    timeout_body_s: float = Field(
        30.0, gt=0, description="a request's body must arrive within this of its headers (408)"
    )
    replica_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="this process's name in /model and the x-replica header (default: the host name, "
        "which is the pod's or container's)",
    )

    @field_validator("admin_token", "api_token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("set but empty: unset it, or set a real token")
        return value

    def exposure_problem(self) -> str | None:
        """Why serving as configured would expose open writes beyond this machine, or None."""
        if self.api_token is not None or self.allow_anonymous_writes or is_loopback(self.host):
            return None
        return (
            f"listening on {self.host} (beyond loopback) with writes open to anyone: set API_TOKEN, "
            "or ALLOW_ANONYMOUS_WRITES=true to allow that on purpose"
        )


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
