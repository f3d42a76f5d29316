"""The Kubernetes manifests agree with each other, with the image and with the config."""

from __future__ import annotations

import re
from pathlib import Path
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


def test_deployment_probes_security_and_resources(tmp_path: Path) -> None:
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
    # every setting is a literal one remit knows (secrets come as files, see below)
    assert all(set(e) == {"name", "value"} for e in env.values())
    literal = {name: e["value"] for name, e in env.items()}
    known = {*_config.env_names().values(), *_config.secret_file_names().values()}
    assert set(literal) <= known
    # the secret files resolve to the mounted Secret keys; with the example values (a
    # Redis URL from secret.yaml, a generated key for the Secret made by hand) the config
    # is valid
    files = _secret_files(pod, c, d, tmp_path)
    assert {"REMIT_REDIS_URL_FILE", "REMIT_AUDIT_HMAC_KEY_FILE"} <= set(files)
    cfg = _config.load(environ={**literal, **files})
    assert cfg.redis_url == d["Secret/remit-redis"]["stringData"]["url"]
    assert cfg.audit_hmac_key
    assert cfg.port == ports["grpc"]
    assert int(cfg.metrics_address.rsplit(":", 1)[1]) == ports["metrics"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > cfg.shutdown_drain_seconds + cfg.shutdown_grace_seconds
    # the image's user is the one the pod runs as
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile


def _secret_files(
    pod: dict[str, Any], c: dict[str, Any], d: dict[str, dict[str, Any]], tmp_path: Path
) -> dict[str, str]:
    """Each ``*_FILE`` setting's path, checked to be a key of a Secret projected into a
    read-only mount, and replaced by a file holding an example value under ``tmp_path``."""
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    out: dict[str, str] = {}
    for e in c["env"]:
        if not e["name"].endswith("_FILE"):
            continue
        directory, _, name = e["value"].rpartition("/")
        mount = mounts[directory]
        assert mount.get("readOnly") is True, mount
        sources = volumes[mount["name"]]["projected"]["sources"]
        (item, secret), *_ = [
            (i, s["secret"]["name"])
            for s in sources
            for i in s["secret"]["items"]
            if i["path"] == name
        ]
        if f"Secret/{secret}" in d:
            value = d[f"Secret/{secret}"]["stringData"][item["key"]]
        else:  # made by hand (secret.yaml says how): a key as that command makes it
            assert f"create secret generic {secret}" in (K8S / "secret.yaml").read_text()
            value = "ab" * 32
        path = tmp_path / name
        path.write_text(value + "\n", encoding="utf-8")
        out[e["name"]] = str(path)
    return out


def test_every_resource_is_in_the_remit_namespace_never_default() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["namespace"] == "remit"
    d = docs()
    assert d["Namespace/remit"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for name, doc in d.items():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "remit", name


def test_the_image_is_pinned_by_digest_and_ci_sets_it() -> None:
    (c,) = docs()["Deployment/remit"]["spec"]["template"]["spec"]["containers"]
    name, _, digest = c["image"].partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), c["image"]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kust["images"]
    assert (image["name"], image["digest"]) == (name, digest)
    # the placeholder is documented with the step that replaces it
    assert "kustomize edit set image" in (K8S / "kustomization.yaml").read_text()


def test_a_network_policy_admits_clients_and_monitoring_only() -> None:
    d = docs()
    labels = d["Deployment/remit"]["spec"]["template"]["metadata"]["labels"]
    (c,) = d["Deployment/remit"]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    policy = d["NetworkPolicy/remit"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert admitted == {ports["grpc"], ports["metrics"]}
    assert all(rule.get("from") for rule in policy["ingress"])  # never from anywhere
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {53, 6379}


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
