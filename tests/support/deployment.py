"""The deployment files as the tests read them, through parsers that others keep.

The Dockerfile is read by `dockerfile-parse`, `.dockerignore` by docker-py's `PatternMatcher`
(Moby's matching rules: the last matching pattern wins, a match of a parent folder counts), and
docker-compose.yml by PyYAML. Two pieces are written here: stages built `FROM` an earlier stage
inherit its environment (dockerfile-parse starts each stage afresh), and Compose's variable
interpolation, which no maintained Python package implements (docker-compose 1.x, which did, is
abandoned and pins an old PyYAML and jsonschema).
"""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass

import yaml
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser
from dockerfile_parse.parser import image_from

from tests.support import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SCHEMA = REPO / "tests" / "deployment" / "compose-spec.json"

APP_CMD = ["python", "-m", "app"]
TRAIN_CMD = ["python", "-m", "training"]

# What a stage built FROM an outside image starts with (python:3.11-slim sets PATH so too).
IMAGE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


# --------------------------------------------------------------------------------------------
# Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass(frozen=True)
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction]
    env: dict[str, str]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages() -> list[Stage]:
    """The build stages in order, each with the environment it ends with."""
    stages: list[tuple[list[Instruction], list[str]]] = []
    for entry in DockerfileParser(str(DOCKERFILE)).structure:
        if entry["instruction"] == "COMMENT":
            continue
        instruction = Instruction(entry["instruction"], entry["value"], entry["startline"] + 1)
        if instruction.keyword == "FROM":
            stages.append(([], []))
        if stages:  # ARGs before the first FROM belong to no stage
            stages[-1][0].append(instruction)
            stages[-1][1].append(entry["content"])
    assert stages, "Dockerfile has no FROM"
    built: list[Stage] = []
    for instructions, lines in stages:
        base, name = image_from(instructions[0].args)
        assert base, f"cannot parse FROM on line {instructions[0].line}"
        parent = next((s for s in built if s.name == base), None)
        parsed = DockerfileParser(
            fileobj=io.BytesIO("".join(lines).encode()), parent_env=dict(parent.env if parent else IMAGE_ENV)
        )
        built.append(Stage(name, base, instructions, parsed.context_structure[-1].envs))
    return built


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def exec_form(args: str, what: str) -> list[str]:
    assert args.startswith("["), f"{what} must use the JSON exec form, got: {args}"
    value = json.loads(args)
    assert isinstance(value, list), f"{what}: {args}"
    assert all(isinstance(v, str) for v in value), f"{what}: {args}"
    return value


def image_cmd() -> list[str]:
    cmd = final_stage().last("CMD")
    assert cmd is not None, "the final stage has no CMD"
    return exec_form(cmd.args, "CMD")


def copy_sources(stage: Stage) -> list[str]:
    """Sources of the COPY/ADD instructions of a stage that read from the build context."""
    sources = []
    for instruction in stage.instructions:
        if instruction.keyword not in {"COPY", "ADD"}:
            continue
        tokens = shlex.split(instruction.args)
        if any(t.startswith("--from=") for t in tokens):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def dockerfile_healthcheck() -> list[str]:
    healthcheck = final_stage().last("HEALTHCHECK")
    assert healthcheck is not None, "the final stage has no HEALTHCHECK"
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.*)", healthcheck.args, re.S)
    assert match, f"HEALTHCHECK must be `HEALTHCHECK [options] CMD [...]`: {healthcheck.args}"
    return exec_form(match.group(2), "HEALTHCHECK CMD")


# --------------------------------------------------------------------------------------------
# .dockerignore


def build_context() -> PatternMatcher:
    """`.dockerignore`'s patterns, read as docker-py's `build` reads them; `.matches(path)` is
    true for a path left out of the build context."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return PatternMatcher([line for line in lines if line and not line.startswith("#")])


# --------------------------------------------------------------------------------------------
# docker-compose.yml: variable interpolation as Compose does it, and volume parsing.

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-+?])(?P<word>[^}]*))?\}|\$(?P<plain>[A-Za-z_]\w*)"
)


def interpolate(value: object, env: dict[str, str]) -> object:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, word = match.group("op"), match.group("word")
        current = env.get(name)
        is_set, non_empty = current is not None, bool(current)
        if op is None:
            return current or ""
        present = non_empty if op.startswith(":") else is_set
        if op.endswith("-"):
            return current if present else word
        if op.endswith("+"):
            return word if present else ""
        if not present:
            raise AssertionError(f"required variable {name} is not set: {word}")
        return current

    return _INTERPOLATION.sub(replace, value)


def load_compose_raw() -> dict:
    with COMPOSE_FILE.open() as f:
        return yaml.safe_load(f)


def load_compose(env: dict[str, str] | None = None) -> dict:
    return interpolate(load_compose_raw(), env or {})


def command_of(service: dict) -> list[str] | None:
    """A service's command as the container receives it (Compose splits a string shell-style)."""
    command = service.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else list(command)


def effective_command(service: dict) -> list[str]:
    return command_of(service) or image_cmd()


def effective_env(service: dict) -> dict[str, str]:
    env = dict(final_stage().env)
    settings = service.get("environment") or {}
    if isinstance(settings, list):
        settings = dict(item.split("=", 1) for item in settings if "=" in item)
    env.update({k: str(v) for k, v in settings.items() if v is not None})
    return env


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    type: str


def mounts(service: dict) -> list[Mount]:
    """A service's volumes, short syntax (`source:target[:options]`) or long."""
    result = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *rest = volume.split(":")
            options = rest[0].split(",") if rest else []
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
            result.append(Mount(source, target, "ro" in options, kind))
        else:
            result.append(
                Mount(
                    volume.get("source", ""), volume["target"], bool(volume.get("read_only")), volume["type"]
                )
            )
    return result


def mount_at(service: dict, target: str) -> Mount:
    found = [m for m in mounts(service) if m.target.rstrip("/") == target.rstrip("/")]
    assert found, f"nothing is mounted at {target}; mounts: {mounts(service)}"
    return found[0]


def compose_healthcheck() -> list[str]:
    test = load_compose()["services"]["api"].get("healthcheck", {}).get("test")
    assert isinstance(test, list), f"the api healthcheck must be an exec-form list: {test}"
    assert test[0] == "CMD", f"the api healthcheck must run a command directly: {test}"
    return test[1:]
