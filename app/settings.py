"""Server settings, read from the environment (and a `.env` file) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server; each one is the environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    model_dir: Path = Field(Path("models"), description="folder whose `current` bundle is served")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    log_level: str = Field("info", description="debug, info, warning or error")
    batch_window_ms: float = Field(
        2.0, ge=0, le=1000, description="how long a batch waits for more requests once one arrived"
    )
    batch_max_users: int = Field(64, ge=1, description="most users scored in one model call")
    batch_max_requests: int = Field(64, ge=1, description="most /predict requests merged in one call")
    max_queue: int = Field(
        2048, ge=1, description="queued requests beyond which new ones get 503 with Retry-After"
    )
    predict_max_pairs: int = Field(10_000, ge=1, description="most pairs in one /predict request")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, description="request bodies above this size get 413 before being read"
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
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS; none (no CORS headers) by default"
    )
    shutdown_grace_s: float = Field(10.0, ge=0, description="time in-flight requests get on SIGTERM")
