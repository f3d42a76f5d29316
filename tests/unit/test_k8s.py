"""The Kubernetes manifests agree with each other, with the image and with the config."""

from __future__ import annotations

from typing import Any

import yaml
from remit import config as _config

from tests.support import ROOT

K8S = ROOT / "deploy" / "k8s"


def docs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


def test_deployment_probes_security_and_resources() -> None:
    d = docs()
    dep = d["Deployment/remit"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    assert c["startupProbe"]["grpc"]["port"] == ports["grpc"]
    assert c["livenessProbe"]["exec"]["command"][:3] == ["remit", "health", "--live"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    env = {e["name"]: e for e in c["env"]}
    secret_ref = env["REMIT_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    secret = d[f"Secret/{secret_ref['name']}"]
    assert secret_ref["key"] in secret["stringData"]
    # every literal setting is one remit knows, and valid; the secret's example URL too
    literal = {name: e["value"] for name, e in env.items() if "value" in e}
    assert set(literal) <= set(_config.env_names().values())
    cfg = _config.load(environ={**literal, "REMIT_REDIS_URL": secret["stringData"]["url"]})
    assert cfg.port == ports["grpc"]
    assert int(cfg.metrics_address.rsplit(":", 1)[1]) == ports["metrics"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > cfg.shutdown_drain_seconds + cfg.shutdown_grace_seconds
    # the image's user is the one the pod runs as
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    d = docs()
    labels = d["Deployment/remit"]["spec"]["template"]["metadata"]["labels"]
    for name in ("Service/remit", "Service/remit-headless"):
        assert d[name]["spec"]["selector"].items() <= labels.items()
    assert d["Service/remit-headless"]["spec"]["clusterIP"] == "None"
    hpa = d["HorizontalPodAutoscaler/remit"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "remit" and hpa["minReplicas"] >= 2
    pdb = d["PodDisruptionBudget/remit"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < hpa["minReplicas"]
