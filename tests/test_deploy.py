"""
`deploy/`: the Kubernetes manifests validate against the Kubernetes API's schemas (`kubernetes-validate`, strict: no
unknown field), the Prometheus alert rules pass `promtool check rules` (where promtool is installed: Debian's
`prometheus` package; `.ci/run` installs it), and every metric the alerts and the Grafana dashboard name is one that
`orcahello live`'s exporter serves.
"""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "orcahello-live.json"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor version still supported by the Kubernetes project in 2026
HYDROPHONES = ("bush-point", "north-sjc", "orcasound-lab", "port-townsend")
METRIC_NAME = re.compile(r"\b(orcahello_live_[a-z_]+)\b")


def exported_names():
    """Every sample name `orcahello live --metrics-port` serves (one source, the webhook, the model info)."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from orcahello.live_metrics import LiveMetrics

    metrics = LiveMetrics()
    metrics.describe("model", {"weights_sha256": "0" * 64}, {}, {}, "hash", "0")
    metrics.add_source("rpi_node")
    metrics.windows_written("rpi_node", 3, 1, 2.0)
    metrics.turned()
    metrics.spooled.set(0)
    text = generate_latest(metrics.registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def manifests(folder):
    """`(path, document)` of every Kubernetes resource under `folder` (kustomization files aside)."""
    for path in sorted(folder.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def test_every_manifest_validates_against_the_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = list(manifests(KUBERNETES))
    kinds = sorted({document["kind"] for _, document in documents})
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"]
    for path, document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.relative_to(REPO_ROOT)}: {document['kind']}: {error.message} at {list(error.path)}")


def test_a_manifest_with_a_mistake_is_caught():
    """The validator sees what it is shown: a misspelt field and a wrong type fail."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    [deployment] = [document for _, document in manifests(KUBERNETES / "base") if document["kind"] == "Deployment"]
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "one"
    for document in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_each_overlay_is_one_hydrophone_in_its_namespace_with_its_config():
    base = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    for resource in base["resources"]:
        assert (KUBERNETES / "base" / resource).is_file(), resource
    [deployment] = [document for _, document in manifests(KUBERNETES / "base") if document["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    environment = {entry["name"]: entry["value"] for entry in container["env"]}
    config_volume = next(volume for volume in pod["spec"]["volumes"] if "configMap" in volume)
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == config_volume["name"])
    # The ConfigMap's config.yml is what --hydrophone-config reads.
    assert environment["ORCAHELLO_HYDROPHONE_CONFIG"] == f"{mount['mountPath']}/config.yml"
    assert environment["ORCAHELLO_METRICS_HOST"] == "0.0.0.0"
    port = int(environment["ORCAHELLO_METRICS_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["memory"] and container["resources"]["requests"]["cpu"]
    nodes = set()
    for hydrophone in HYDROPHONES:
        folder = KUBERNETES / "overlays" / hydrophone
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert kustomization["namespace"] == hydrophone
        for resource in kustomization["resources"]:
            assert (folder / resource).exists(), (hydrophone, resource)
        documents = {document["kind"]: document for _, document in manifests(folder)}
        assert documents["Namespace"]["metadata"]["name"] == hydrophone
        config_map = documents["ConfigMap"]
        assert config_map["metadata"]["name"] == config_volume["configMap"]["name"]
        config = yaml.safe_load(config_map["data"]["config.yml"])
        assert config["hls_stream_type"] == "LiveHLS"
        nodes.add(config["hls_hydrophone_id"])
    assert len(nodes) == len(HYDROPHONES)  # one node each


def test_each_overlays_config_is_read_by_hydrophone_config():
    """The ConfigMaps as `--hydrophone-config` reads them (issue 25's reader, where it has landed)."""
    upstream_config = pytest.importorskip("orcahello.upstream_config", reason="--hydrophone-config not on this branch")
    for hydrophone in HYDROPHONES:
        path = KUBERNETES / "overlays" / hydrophone / "hydrophone-configs.yaml"
        config = upstream_config.read_hydrophone_config(str(path))
        assert [location.hydrophone_id for location in config.locations] == [
            yaml.safe_load(yaml.safe_load(path.read_text())["data"]["config.yml"])["hls_hydrophone_id"]
        ]


def test_alert_rules_name_only_exported_metrics():
    rules = yaml.safe_load(ALERTS.read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} >= {
        "OrcaHelloStreamStalled",
        "OrcaHelloLagGrowing",
        "OrcaHelloDetectionsSpooling",
    }
    named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert named and named <= exported_names(), named - exported_names()


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
def test_alert_rules_pass_promtool():
    completed = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "SUCCESS: 7 rules found" in completed.stdout


def test_the_dashboard_names_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert named and named <= exported_names(), named - exported_names()
    assert {"orcahello_live_lag_seconds", "orcahello_live_webhook_spooled"} <= named
