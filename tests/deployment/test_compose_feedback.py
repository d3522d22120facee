"""docker-compose.yml's feedback database and scheduled retraining (static checks, no Docker engine).

`test_compose.py` validates the whole file against the Compose Specification; these check what
the feedback store needs of it, read through the same parsers (`tests.support.deployment`).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import make_url

from app.settings import Settings
from tests.support.deployment import command_of, effective_env, load_compose, load_compose_raw, mount_at

DATA = "/var/lib/postgresql/data"


def test_the_database_is_postgresql_on_a_named_volume_with_a_pg_isready_healthcheck():
    compose = load_compose()
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:15(\.\d+)?", db["image"]), "the official image, the tested major version"
    data = mount_at(db, DATA)
    assert data.type == "volume" and data.source in compose["volumes"] and not data.read_only
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready", test
    assert "ports" not in db, "the database is for the services of this file only"


@pytest.mark.parametrize("name", ["api", "train", "retrain"])
@pytest.mark.parametrize("env", [{}, {"POSTGRES_PASSWORD": "an0ther"}], ids=["defaults", "password"])
def test_every_program_waits_for_a_healthy_database_and_uses_it(name, env):
    services = load_compose(env)["services"]
    service, db = services[name], services["db"]["environment"]
    assert service["depends_on"]["db"] == {"condition": "service_healthy"}
    url = make_url(effective_env(service)["DATABASE_URL"])
    assert url.drivername == "postgresql" and url.host == "db"
    assert (url.username, url.password, url.database) == (
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
        db["POSTGRES_DB"],
    )


def test_the_api_refuses_open_writes_unless_a_token_or_a_deliberate_choice_is_given():
    raw = load_compose_raw()["services"]["api"]["environment"]
    assert "API_TOKEN" in raw and raw["API_TOKEN"] is None, (
        "API_TOKEN must pass through only when set: an empty one would stop the api"
    )

    def problem(env: dict[str, str]) -> str | None:
        """What the api would say about serving, with `env` in the shell (API_TOKEN passes through)."""
        values = effective_env(load_compose(env)["services"]["api"])
        values.update({name: env[name] for name in raw if raw[name] is None and name in env})
        return Settings(**{name.lower(): value for name, value in values.items()}).exposure_problem()

    assert problem({}) is not None
    assert problem({"API_TOKEN": "s3cret"}) is None
    assert problem({"ALLOW_ANONYMOUS_WRITES": "true"}) is None


def test_scheduled_retraining_is_an_opt_in_profile_sharing_the_models():
    services = load_compose({"RETRAIN_EVERY": "30m"})["services"]
    retrain, train = services["retrain"], services["train"]
    assert retrain["profiles"] == ["retrain"]
    assert command_of(retrain)[:5] == ["python", "-m", "training", "--every", "30m"]
    assert command_of(load_compose()["services"]["retrain"])[4] == "6h"
    assert retrain["volumes"] == train["volumes"] and retrain["image"] == train["image"]
    assert retrain["depends_on"]["train"] == {"condition": "service_completed_successfully"}
