"""docker-compose.yml: valid by the Compose Specification, and wired to the image as documented.

No Docker engine is needed: the file is validated against the Compose Specification's JSON
schema (vendored beside this file) and cross-checked with the Dockerfile.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from app.settings import Settings
from tests.support import REPO
from tests.support.deployment import (
    APP_CMD,
    COMPOSE_SCHEMA,
    DOCKERFILE,
    TRAIN_CMD,
    build_context,
    command_of,
    copy_sources,
    dockerfile_stages,
    effective_command,
    effective_env,
    load_compose,
    load_compose_raw,
    mount_at,
)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"MOVIELENS_DIR": "/srv/movielens", "PORT": "9000", "TRAIN_ARGS": "--epochs 1", "API_REPLICAS": "3"},
    ],
    ids=["defaults", "all-settings"],
)
def test_compose_file_matches_the_compose_spec(env: dict[str, str]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for label, document in [("as written", load_compose_raw()), ("interpolated", load_compose(env))]:
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"docker-compose.yml ({label}) breaks the Compose Specification:\n" + (
            "\n".join(f"  {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        )


def test_both_services_run_this_repository_image() -> None:
    services = load_compose()["services"]
    for name in ("train", "api"):
        build = services[name].get("build")
        assert build is not None, f"{name} must be built from this repository"
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (REPO / context / dockerfile).resolve() == DOCKERFILE, f"{name}: {build}"
    assert services["train"].get("image") == services["api"].get("image"), (
        "train and api must share one image (so the api serves what the same code trained)"
    )


def test_services_use_the_documented_entry_points() -> None:
    services = load_compose()["services"]
    api = effective_command(services["api"])
    assert api == APP_CMD, f"api runs {api}, expected {APP_CMD} (the image's CMD or its own)"
    train = effective_command(services["train"])
    assert train[:3] == TRAIN_CMD, f"train runs {train}, expected {TRAIN_CMD} ..."
    assert "--if-missing" in train, "train must skip training when a bundle already exists"


def test_entry_point_packages_exist_and_reach_the_image() -> None:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = packages["packages"]["find"]["include"]
    copied = {
        Path(source).as_posix().rstrip("/") for stage in dockerfile_stages() for source in copy_sources(stage)
    }
    ignored = build_context()
    for command in (APP_CMD, TRAIN_CMD):
        package = command[2]
        main = REPO / package / "__main__.py"
        assert main.is_file(), f"`{' '.join(command)}` needs {main.relative_to(REPO)}"
        assert any(re.fullmatch(p.replace("*", ".*"), package) for p in include), (
            f"pyproject.toml [tool.setuptools.packages.find] include={include} omits {package}"
        )
        assert package in copied, f"the Dockerfile never copies {package}/ into a build stage"
        assert not ignored.matches(f"{package}/__main__.py"), f".dockerignore drops {package}/"


def test_training_data_folder_is_optional() -> None:
    without = load_compose({})["services"]["train"]
    assert command_of(without) == [*TRAIN_CMD, "--if-missing"], (
        "without MOVIELENS_DIR, train must run plain `python -m training --if-missing` "
        f"(download fallback), got {command_of(without)}"
    )
    assert "MOVIELENS_DIR" not in effective_env(without)

    folder = "/srv/movielens"
    with_dir = load_compose({"MOVIELENS_DIR": folder})["services"]["train"]
    command = command_of(with_dir)
    assert command[:4] == [*TRAIN_CMD, "--if-missing"], command
    data_dir = command[command.index("--data-dir") + 1] if "--data-dir" in command else None
    if data_dir is None:
        data_dir = effective_env(with_dir).get("MOVIELENS_DIR")
    assert data_dir, f"MOVIELENS_DIR={folder} does not reach the training command: {command}"
    mount = mount_at(with_dir, data_dir)
    assert mount.source == folder, f"{data_dir} is mounted from {mount.source}, not {folder}"
    assert mount.read_only, "the data folder must be mounted read-only"

    cache = effective_env(without).get("MOVIELENS_CACHE_DIR")
    assert cache, "MOVIELENS_CACHE_DIR must point the download cache into a volume"
    cache_mount = mount_at(without, cache)
    assert cache_mount.type == "volume" and not cache_mount.read_only, cache_mount
    assert cache_mount.source in load_compose().get("volumes", {}), cache_mount


def test_api_waits_for_training_and_mounts_the_models_read_only() -> None:
    compose = load_compose()
    api, train = compose["services"]["api"], compose["services"]["train"]

    depends = api.get("depends_on")
    assert isinstance(depends, dict) and "train" in depends, f"api depends_on: {depends}"
    assert depends["train"].get("condition") == "service_completed_successfully", depends

    model_dir = effective_env(api).get("MODEL_DIR")
    assert model_dir, "MODEL_DIR is set neither in the image nor for the api service"
    assert effective_env(train).get("MODEL_DIR") == model_dir, "train and api disagree on MODEL_DIR"
    served, written = mount_at(api, model_dir), mount_at(train, model_dir)
    assert served.read_only, f"api must mount {model_dir} read-only: {served}"
    assert not written.read_only, f"train must be able to write {model_dir}: {written}"
    assert served.type == written.type == "volume", (served, written)
    assert served.source == written.source, "api must serve the volume train writes to"
    assert served.source in compose.get("volumes", {}), f"{served.source} is not a named volume"


def test_the_api_scales_behind_the_proxy_with_no_host_port() -> None:
    """`docker compose up --scale api=3`: nothing may tie the api to one container."""
    api = load_compose({"API_REPLICAS": "3"})["services"]["api"]
    env = effective_env(api)
    assert env.get("HOST") == "0.0.0.0", "the app must listen on every interface in a container"
    assert "ports" not in api, "a fixed host port would let only one replica start"
    assert "container_name" not in api and "hostname" not in api, "each replica needs its own name"
    assert [str(port) for port in api["expose"]] == [env.get("PORT", "8000")]
    assert api["deploy"]["replicas"] == "3" and load_compose()["services"]["api"]["deploy"]["replicas"] == "1"
    assert "REPLICA_NAME" not in env, "the default, the host name, is each container's own"
    assert api.get("restart") == "unless-stopped"
    # Docker sends SIGTERM, waits stop_grace_period, then SIGKILL: the app drains for SHUTDOWN_GRACE_S.
    grace = float(env.get("SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    assert int(api["stop_grace_period"].removesuffix("s")) > grace, api["stop_grace_period"]
    for name, service in load_compose()["services"].items():
        if name != "proxy":
            assert "ports" not in service, f"only the proxy is published, not {name}"
