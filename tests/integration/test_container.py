"""The container image, without a Docker engine: the Dockerfile's shape (pinned slim base,
multi-stage, non-root, our own HEALTHCHECK, ports), every file it copies exists, and its
entrypoint serves from a clean virtualenv built by the Dockerfile's own RUN line, laid out
as the image lays it out (paths moved under a temporary root, addresses on loopback)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT
from tests.support.ports import free_port

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_base_is_a_pinned_slim_python_and_stages_are_multiple() -> None:
    base = args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith(" AS build")
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_final_stage_runs_as_non_root_with_our_health_check() -> None:
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) >= 1000
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1
    cmd = json.loads(health[0].split("CMD", 1)[1])
    assert cmd[:2] == ["remit", "health"]
    # nothing fetched at build time beyond pip's packages (no curl/wget/grpc_health_probe)
    for word, rest in instructions():
        if word in ("RUN", "ADD"):
            assert not re.search(r"\b(curl|wget|grpc_health_probe|http://|https://)", rest)
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    env = env_of(final)
    assert {int(env["REMIT_ADDRESS"].rsplit(":", 1)[1])} | {
        int(env["REMIT_METRICS_ADDRESS"].rsplit(":", 1)[1])
    } == exposed


def test_every_file_the_dockerfile_copies_exists() -> None:
    copies = [rest for word, rest in instructions() if word == "COPY" and "--from" not in rest]
    assert copies
    for rest in copies:
        *sources, _dest = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            result = subprocess.run(
                ["git", "ls-files", "--error-unmatch", src], cwd=ROOT, capture_output=True
            )
            if (ROOT / ".git").exists():
                assert result.returncode == 0, f"{src} is not committed"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the image is Linux")
def test_entrypoint_serves_from_a_clean_venv_built_the_same_way(tmp_path: Path) -> None:
    build, final = stages()[0], stages()[-1]
    root = tmp_path / "image"

    def moved(path: str) -> str:
        return str(root) + path if path.startswith("/") else path

    workdir = next(rest for word, rest in build if word == "WORKDIR")
    src = Path(moved(workdir))
    src.mkdir(parents=True)
    # the build stage's COPY lines, from this checkout into the moved WORKDIR
    for word, rest in build:
        if word == "COPY":
            *sources, dest = rest.split()
            for s in sources:
                target = src / Path(s).name if dest in ("./", ".") else src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / s).is_dir():
                    shutil.copytree(
                        ROOT / s, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                    )
                else:
                    shutil.copy2(ROOT / s, target)
    # the build stage's RUN lines, verbatim but for the moved absolute paths
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        and not k.startswith(("REMIT_", "OTEL_"))
    }
    clean_env["PATH"] = os.pathsep.join(
        p for p in clean_env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    for word, rest in build:
        if word == "RUN":
            command = re.sub(r"(?<![\w.])(/(?:opt|src|srv)\b)", lambda m: moved(m.group(1)), rest)
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=src,
                env=clean_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stderr[-3000:]
    # the final stage's COPY --from=build lines
    for word, rest in final:
        if word == "COPY" and rest.startswith("--from=build"):
            _, frm, dest = rest.split()
            if Path(moved(frm)) != Path(moved(dest)):
                shutil.copytree(moved(frm), moved(dest), symlinks=True, dirs_exist_ok=True)
    # the final stage's environment, moved, with the listeners on loopback
    env = dict(clean_env)
    for key, value in env_of(final).items():
        value = value.replace("${PATH}", clean_env.get("PATH", ""))
        value = re.sub(r"(?<![\w.])(/(?:opt|src|srv)\b)", lambda m: moved(m.group(1)), value)
        env[key] = value
    grpc_port, metrics_port = free_port(), free_port()
    assert env["REMIT_ADDRESS"].startswith("0.0.0.0:")
    env["REMIT_ADDRESS"] = f"127.0.0.1:{grpc_port}"
    env["REMIT_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
    venv_python = Path(moved("/opt/remit")) / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import remit; print(remit.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert where.stdout.startswith(str(root)), where  # installed, not this checkout
    entry = json.loads(next(rest for word, rest in final if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in final if word == "CMD"))
    health = json.loads(
        next(rest for word, rest in final if word == "HEALTHCHECK").split("CMD", 1)[1]
    )
    exe = shutil.which(entry[0], path=env["PATH"])
    assert exe is not None and exe.startswith(str(root)), exe
    workdir_final = moved(next(rest for word, rest in final if word == "WORKDIR"))
    proc = subprocess.Popen(
        [exe, *entry[1:], *cmd],
        cwd=workdir_final,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        healthy = False
        for _ in range(60):  # bounded: up to ~30 s for the first SERVING
            probe = subprocess.run(
                [shutil.which(health[0], path=env["PATH"]) or health[0], *health[1:]],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                cwd=workdir_final,
            )
            if probe.returncode == 0:
                healthy = True
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.5)
        assert healthy, probe.stderr
        assert "SERVING" in probe.stdout and "policy-origin=local" in probe.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"remit_policy_bundle_info" in r.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_compose_runs_two_replicas_and_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "redis" in services
    remit = [s for name, s in services.items() if name != "redis"]
    replicas = sum(s.get("deploy", {}).get("replicas", 1) for s in remit)
    assert replicas == 2
    for s in remit:
        assert s["build"]["context"] == "." and s["environment"]["REMIT_REDIS_URL"].startswith(
            "redis://redis:"
        )
