"""docker-compose.yml's feedback database and scheduled retraining (static checks, no Docker engine).

The whole file is validated against the Compose Specification by the deployment tests; these
check what the feedback store needs of it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from sqlalchemy import make_url

from app.settings import Settings

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DATA = "/var/lib/postgresql/data"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def with_defaults(value: str) -> str:
    """`${NAME:-default}` as Compose expands it when NAME is unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_the_database_is_postgresql_on_a_named_volume_with_a_pg_isready_healthcheck(compose):
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:15(\.\d+)?", db["image"]), "the official image, the tested major version"
    volume, target = db["volumes"][0].split(":")[:2]
    assert target == DATA and volume in compose["volumes"], db["volumes"]
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready", test
    assert "ports" not in db, "the database is for the services of this file only"


@pytest.mark.parametrize("name", ["api", "train", "retrain"])
def test_every_program_waits_for_a_healthy_database_and_uses_it(compose, name):
    service, db = compose["services"][name], compose["services"]["db"]["environment"]
    assert service["depends_on"]["db"] == {"condition": "service_healthy"}
    url = make_url(with_defaults(service["environment"]["DATABASE_URL"]))
    assert url.drivername == "postgresql" and url.host == "db"
    assert url.username == db["POSTGRES_USER"] and url.database == db["POSTGRES_DB"]
    assert url.password == with_defaults(db["POSTGRES_PASSWORD"])


def test_the_api_refuses_open_writes_unless_a_token_or_a_deliberate_choice_is_given(compose):
    environment = compose["services"]["api"]["environment"]
    assert "API_TOKEN" in environment and environment["API_TOKEN"] is None, (
        "API_TOKEN passes through only when set: an empty one would stop the api"
    )

    def problem(**extra: str) -> str | None:
        values = {k.lower(): with_defaults(str(v)) for k, v in environment.items() if v is not None}
        return Settings(**{**values, **extra}).exposure_problem()

    assert problem() is not None
    assert problem(api_token="s3cret") is None
    assert problem(allow_anonymous_writes="true") is None


def test_scheduled_retraining_is_an_opt_in_profile_sharing_the_models(compose):
    retrain, train = compose["services"]["retrain"], compose["services"]["train"]
    assert retrain["profiles"] == ["retrain"]
    command = shlex.split(with_defaults(retrain["command"]))
    assert command[:5] == ["python", "-m", "training", "--every", "6h"], command
    assert retrain["volumes"] == train["volumes"] and retrain["image"] == train["image"]
    assert retrain["depends_on"]["train"] == {"condition": "service_completed_successfully"}
