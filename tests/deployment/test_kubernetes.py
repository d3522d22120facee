"""deploy/kubernetes: every manifest valid by the Kubernetes schemas (offline, kubernetes-validate),
and wired to the app as it is: its commands, port, probes, shutdown grace, volumes and secrets.

No cluster and no kustomize binary are needed: the kustomization is read as kustomize reads it
for what these manifests use (a resource list, one secretGenerator, a namespace).
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.settings import Settings
from tests.support import REPO
from tests.support.deployment import APP_CMD, TRAIN_CMD, final_stage

FOLDER = REPO / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
# The oldest Kubernetes still commonly run, and the newest the installed schemas know.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
MEASURED_PEAK_RSS_MB = 830  # the fleet benchmark's replicas after a live swap (docs/scaling.md)
MEBI = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def documents() -> list[tuple[str, dict]]:
    return [
        (name, document)
        for name in KUSTOMIZATION["resources"]
        for document in yaml.safe_load_all((FOLDER / name).read_text())
        if document
    ]


def find(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(workload: dict) -> dict:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else None
    pod = pod or spec["template"]["spec"]
    (only,) = pod["containers"]
    return only


def pod_spec(workload: dict) -> dict:
    spec = workload["spec"]
    return (spec["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else spec)["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    spec = workload["spec"]
    return (spec["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else spec)["template"]["metadata"][
        "labels"
    ]


def env(workload: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container(workload).get("env", [])}


def quantity(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMG]i)?", str(value)).groups()
    return float(number) * MEBI.get(unit, 1)


def test_the_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    on_disk = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert KUSTOMIZATION["namespace"] == find("Namespace")["metadata"]["name"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    for name, document in documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path))
            pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {path}: {error.message}")


def test_the_api_runs_the_app_on_its_port_with_its_probes() -> None:
    from app.main import create_app

    routes = set(create_app(Settings()).openapi()["paths"])
    api = find("Deployment", "api")
    main = container(api)
    assert main["command"] == APP_CMD
    variables = {name: item.get("value") for name, item in env(api).items()}
    (port,) = main["ports"]
    assert str(port["containerPort"]) == variables["PORT"] == final_stage().env["PORT"]
    assert variables["HOST"] == "0.0.0.0" and variables["MODEL_DIR"] == final_stage().env["MODEL_DIR"]
    probes = {kind: main[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert probes["readiness"]["path"] == "/readyz", "out of the Service while not ready or draining"
    assert probes["liveness"]["path"] == probes["startup"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in routes and probe["port"] == port["name"]
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "as the image's start period"
    assert env(api)["REPLICA_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "replicas" not in api["spec"], "the HorizontalPodAutoscaler owns the replica count"


def test_the_grace_period_covers_the_pre_stop_hook_and_the_app_drain() -> None:
    api = find("Deployment", "api")
    grace = float(env(api)["SHUTDOWN_GRACE_S"]["value"])
    assert grace == Settings().shutdown_grace_s, "the app's own default, stated"
    command = container(api)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    pre_stop = float(command[1])
    assert (
        pre_stop
        >= find("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
            "periodSeconds"
        ]
    ), "long enough for the endpoint to be removed before SIGTERM"
    assert pod_spec(api)["terminationGracePeriodSeconds"] > pre_stop + grace


def test_resources_are_sized_from_measured_memory() -> None:
    resources = container(find("Deployment", "api"))["resources"]
    assert quantity(resources["requests"]["memory"]) >= MEASURED_PEAK_RSS_MB * 2**20
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"])
    assert quantity(resources["requests"]["cpu"]) >= 1, "the HPA's utilisation is against this"


def test_disruption_budget_autoscaler_and_service_select_the_api() -> None:
    api = find("Deployment", "api")
    labels = pod_labels(api)
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find("Service", "api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container(api)["ports"][0]["name"]
    hpa = find("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2
    assert find("PodDisruptionBudget")["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_training_publishes_to_the_shared_volume_the_api_reads() -> None:
    api, train = find("Deployment", "api"), find("CronJob", "train")
    assert container(train)["command"] == TRAIN_CMD and container(api)["image"] == container(train)["image"]
    assert train["spec"]["concurrencyPolicy"] == "Forbid", "one training run at a time"
    claim = find("PersistentVolumeClaim", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "mounted by every api pod and the job"

    def models_mount(workload: dict) -> tuple[dict, dict]:
        model_dir = env(workload)["MODEL_DIR"]["value"]
        (mount,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == model_dir]
        (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
        return mount, volume

    served, written = models_mount(api), models_mount(train)
    assert served[0]["readOnly"] and not written[0].get("readOnly")
    assert served[1]["persistentVolumeClaim"]["claimName"] == "models"
    assert written[1]["persistentVolumeClaim"]["claimName"] == "models"
    assert pod_spec(train)["securityContext"]["fsGroup"] == 10001, "the image's user can write there"


def test_database_url_and_tokens_come_from_the_secret() -> None:
    generator = KUSTOMIZATION["secretGenerator"][0]
    example = FOLDER / "secrets.env.example"
    keys = {line.split("=", 1)[0].lstrip("# ") for line in example.read_text().splitlines() if "=" in line}
    assert generator["envs"] == ["secrets.env"]
    assert "deploy/kubernetes/secrets.env" in (REPO / ".gitignore").read_text(), "never committed"
    for _, workload in documents():
        if workload["kind"] not in ("Deployment", "StatefulSet", "CronJob"):
            continue
        for name, item in env(workload).items():
            reference = item.get("valueFrom", {}).get("secretKeyRef")
            if name in ("DATABASE_URL", "API_TOKEN", "ADMIN_TOKEN", "POSTGRES_PASSWORD"):
                assert reference, f"{workload['metadata']['name']}: {name} must come from the Secret"
            if reference:
                assert reference["name"] == generator["name"] and reference["key"] in keys, reference
    url = next(line for line in example.read_text().splitlines() if line.startswith("DATABASE_URL="))
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()
    db = find("Service", "db")
    assert db["metadata"]["name"] == host and db["spec"]["ports"][0]["port"] == int(port)


def test_only_the_api_and_training_reach_the_database() -> None:
    policy = find("NetworkPolicy")
    database = find("StatefulSet", "db")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(database).items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"]), "no namespace or address ranges"
    expected = [pod_labels(find("Deployment", "api")), pod_labels(find("CronJob", "train"))]
    assert all(any(a.items() <= e.items() for e in expected) for a in allowed) and len(allowed) == 2
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]


def test_the_manifests_say_where_their_figures_come_from() -> None:
    assert "docs/scaling.md" in Path(FOLDER / "api.yaml").read_text()
