"""Operations, against the real server started as a subprocess (`remit serve`): metrics that
move, health with detail, SIGTERM under load, invalid settings, --workers, tracing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import ROOT
from tests.support.ports import free_port, free_ports

REMIT = [sys.executable, "-m", "remit.cli"]
# settings that would change what these tests see, if the developer's shell has them
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("REMIT_", "OTEL_"))}
# what each server process logs once it answers (serve_forever); workers log it each
SERVING_LOG = re.compile(r"remit serving policy .*, pid (\d+)$", re.MULTILINE)
T = TypeVar("T")


class Server:
    """``remit serve`` as a subprocess. Stdout (the decision log) goes to a file; stderr is
    read line by line by a thread, so a test waits on what the server says it has done
    (``wait_stderr``) instead of sleeping, and a full pipe never blocks the server."""

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        metrics_ports: int = 1,
    ):
        self.port = free_port()
        self.metrics_port = free_ports(metrics_ports)
        self.address = f"127.0.0.1:{self.port}"
        env = dict(
            CLEAN_ENV,
            REMIT_ADDRESS=self.address,
            REMIT_METRICS_ADDRESS=f"127.0.0.1:{self.metrics_port}",
            PYTHONFAULTHANDLER="1",
            **(extra_env or {}),
        )
        # a file, not a pipe: the decision log is large and only read at the end
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by kill/stop)
        self.proc = subprocess.Popen(
            [*REMIT, "serve", *args],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._err: list[str] = []
        self._err_closed = False
        self._err_changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._err_changed:
                self._err.append(line)
                self._err_changed.notify_all()
        with self._err_changed:
            self._err_closed = True  # every process holding the pipe (workers too) has exited
            self._err_changed.notify_all()

    def wait_stderr(self, found: Callable[[str], T | None], timeout: float = 60) -> T:
        """Block until ``found(stderr so far)`` is truthy and return it; fail if the process
        closes stderr first or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._err_changed:
            while True:
                text = "".join(self._err)
                got = found(text)
                if got:
                    return got
                assert not self._err_closed, f"the server exited first: {text[-3000:]}"
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting; the server said: {text[-3000:]}"
                self._err_changed.wait(left)

    def wait_serving(self, workers: int = 1, timeout: float = 60) -> list[int]:
        """Wait until ``workers`` processes have logged that they serve (each logs it once its
        port is open and health is SERVING); their pids."""
        pids = self.wait_stderr(
            lambda err: (found := SERVING_LOG.findall(err)) and len(found) >= workers and found,
            timeout,
        )
        assert self.health() == health_pb2.HealthCheckResponse.SERVING
        return [int(p) for p in pids]

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.address) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        return int(resp.status)

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text: str = r.read().decode()
        return text

    def output(self) -> tuple[str, str]:
        self._out.seek(0)
        with self._err_changed:
            return self._out.read(), "".join(self._err)

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        """SIGTERM, then wait for the exit and for stderr to close (all output read). A server
        still running after ``timeout`` is aborted and the test fails with every thread's
        stack (PYTHONFAULTHANDLER), so a hang says where it hung."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=10)
            self._reader.join(10)
            raise AssertionError(
                f"no exit {timeout} s after SIGTERM: {self.output()[1][-6000:]}"
            ) from None
        self._reader.join(timeout)
        out, err = self.output()
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        s.wait_serving()
        yield s
    finally:
        s.kill()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


EPO_ALLOW = pb.AuthoriseRequest(
    council="torbay",
    decision="apply_epo",
    actor=pb.Actor(id="tm-secret-41", roles=["team_manager"]),
    context=pb.Context(exceptional_circumstances=True),
)
EPO_DENY = pb.AuthoriseRequest(
    council="torbay",
    decision="apply_epo",
    actor=pb.Actor(id="tm-secret-42", roles=["team_manager"]),
)


def test_metrics_counts_move(server: Server) -> None:
    before = server.scrape()
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.AuthorisationServiceStub(ch)
        for _ in range(3):
            assert stub.Authorise(EPO_ALLOW, timeout=5).effect == pb.EFFECT_ALLOW
        assert stub.Authorise(EPO_DENY, timeout=5).effect == pb.EFFECT_DENY
        batch = stub.AuthoriseBatch(
            pb.AuthoriseBatchRequest(
                items=[pb.BatchItem(correlation_id="a", request=EPO_ALLOW)] * 2
            ),
            timeout=5,
        )
        assert len(batch.results) == 2
        with pytest.raises(grpc.RpcError) as bad:
            stub.Authorise(
                pb.AuthoriseRequest(
                    council="no-such-council-7", decision="x", actor=EPO_ALLOW.actor
                ),
                timeout=5,
            )
        assert bad.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    after = server.scrape()
    allow = {"council": "torbay", "decision": "apply_epo", "effect": "EFFECT_ALLOW"}
    deny = dict(allow, effect="EFFECT_DENY")
    assert (
        metric(after, "remit_decisions_total", **allow)
        - metric(before, "remit_decisions_total", **allow)
        == 5
    )  # 3 unary + 2 batch items
    assert (
        metric(after, "remit_decisions_total", **deny)
        - metric(before, "remit_decisions_total", **deny)
        == 1
    )
    assert (
        metric(after, "remit_decision_latency_seconds_count")
        - metric(before, "remit_decision_latency_seconds_count")
        == 6
    )  # one per answered decision (4 unary, 2 batch items); the bad request is an error
    code = bad.value.code().name
    method = "/remit.v1.AuthorisationService/Authorise"
    assert metric(after, "remit_rpc_errors_total", method=method, code=code) == 1
    assert metric(after, "remit_rpcs_total", method=method, code="OK") == 4
    version = re.search(r'remit_policy_bundle_info\{[^}]*version="(\w+)"', after)
    assert version and len(version.group(1)) >= 8
    assert metric(after, "remit_redis_state", state="disabled") == 1
    assert metric(after, "remit_policy_last_reload_timestamp_seconds") > 1.6e9
    assert "remit_audit_dropped_total 0.0" in after
    # no personal data or request content in labels
    assert "tm-secret" not in after and "no-such-council" not in after
    rc, out, _ = server.stop()
    assert rc == 0
    assert out.count('"decision_id":') == 6  # 4 unary answers + 2 batch items, each logged


def test_health_probe_command_reports_detail(server: Server) -> None:
    env = dict(CLEAN_ENV, REMIT_ADDRESS=server.address)
    out = subprocess.run(
        [*REMIT, "health", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "SERVING"
    assert data["policy-origin"] == "local" and data["redis"] == "disabled"
    assert data["pid"] == str(server.proc.pid)
    assert data["policy-version"] == json.loads(
        (ROOT / "policies" / "generated" / "manifest.json").read_text()
    ).get("version", data["policy-version"])
    per_service = subprocess.run(
        [*REMIT, "health", "--service", "remit.v1.AuthorisationService"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert per_service.returncode == 0 and per_service.stdout.startswith("SERVING")
    unknown = subprocess.run(
        [*REMIT, "health", "--service", "nope.Service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


def test_health_probe_fails_when_nothing_listens() -> None:
    env = dict(CLEAN_ENV, REMIT_ADDRESS=f"127.0.0.1:{free_port()}")
    out = subprocess.run(
        [*REMIT, "health", "--timeout", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "UNAVAILABLE" in out.stderr


def test_sigterm_mid_load_fails_no_call_and_exits_0() -> None:
    """A load balancer's view: clients stop sending once health says NOT_SERVING. No call
    may fail, a stream open across SIGTERM finishes, and every answer is in the log."""
    s = Server({"REMIT_SHUTDOWN_DRAIN_SECONDS": "1", "REMIT_SHUTDOWN_GRACE_SECONDS": "10"})
    try:
        s.wait_serving()
        not_serving = threading.Event()
        stop_load = threading.Event()
        ok = [0] * 4
        failures: list[str] = []
        stream_answers: list[int] = []

        def load(i: int) -> None:
            with grpc.insecure_channel(s.address) as ch:
                stub = pb_grpc.AuthorisationServiceStub(ch)
                for _ in range(20_000):  # bounded
                    if not_serving.is_set() or stop_load.is_set():
                        return
                    try:
                        stub.Authorise(EPO_ALLOW, timeout=10)
                        ok[i] += 1
                    except grpc.RpcError as exc:
                        failures.append(f"{exc.code()}: {exc.details()}")

        def stream() -> None:
            def requests() -> Iterator[pb.AuthoriseStreamRequest]:
                for n in range(400):  # bounded; runs past SIGTERM, drain and into grace
                    if not_serving.is_set() and n > 0 and time.monotonic() > close_after[0]:
                        return
                    yield pb.AuthoriseStreamRequest(
                        items=[pb.BatchItem(correlation_id=str(n), request=EPO_ALLOW)]
                    )
                    time.sleep(0.02)

            with grpc.insecure_channel(s.address) as ch:
                try:
                    for resp in pb_grpc.AuthorisationServiceStub(ch).AuthoriseStream(
                        requests(), timeout=30
                    ):
                        stream_answers.extend(
                            1 for r in resp.results if r.response.effect == pb.EFFECT_ALLOW
                        )
                except grpc.RpcError as exc:
                    failures.append(f"stream {exc.code()}: {exc.details()}")

        close_after = [float("inf")]
        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(target=stream))
        for t in threads:
            t.start()
        time.sleep(1.0)
        s.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if s.health() == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
            except grpc.RpcError:
                break
            time.sleep(0.02)
        # the stream keeps sending 1.5 s more: past the 1 s drain, into the grace period
        close_after[0] = time.monotonic() + 1.5
        not_serving.set()
        for t in threads:
            t.join(timeout=40)
        stop_load.set()
        rc, out, err = s.stop()
    finally:
        s.kill()
    assert failures == [], failures[:5]
    assert sum(ok) > 50 and len(stream_answers) > 50
    assert rc == 0, err
    assert "draining" in err and "stopped" in err
    # every answer (unary, and each stream item) is in the decision log: flushed before exit
    assert out.count('"decision_id":') == sum(ok) + len(stream_answers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMIT_ADDRESS", "no-port-here"),
        ("REMIT_ADDRESS", "127.0.0.1:70000"),
        ("REMIT_WORKERS", "0"),
        ("REMIT_WORKERS", "two"),
        ("REMIT_THREADS", "-3"),
        ("REMIT_METRICS_ADDRESS", "127.0.0.1:x"),
        ("REMIT_SHUTDOWN_GRACE_SECONDS", "-1"),
        ("REMIT_SHUTDOWN_DRAIN_SECONDS", "nan"),
        ("REMIT_POLICY_DIR", "/no/such/dir"),
        ("REMIT_LOG_LEVEL", "LOUD"),
        ("REMIT_REDIS_URL", "http://cache:6379"),
        ("REMIT_AUDIT_MODE", "sometimes"),
        ("REMIT_AUDIT_SINK", "syslog"),
        ("REMIT_AUDIT_HMAC_KEY", "not-hex"),
        ("REMIT_AUDIT_HMAC_KEY", "abcd"),
        ("REMIT_TLS_CERT", "/no/such/cert.pem"),
        ("REMIT_ACCESS_FILE", "/no/such/access.yaml"),
        ("REMIT_ALLOW_PLAINTEXT", "perhaps"),
        ("REMIT_BATCH_LIMIT", "0"),
        ("REMIT_BUNDLE_PUBLIC_KEY", "/no/such/key.pem"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_SDK_DISABLED", "maybe"),
    ],
)
def test_invalid_env_stops_the_process_naming_the_variable(name: str, value: str) -> None:
    env = dict(CLEAN_ENV, REMIT_ADDRESS=f"127.0.0.1:{free_port()}")
    env[name] = value
    out = subprocess.run(
        [*REMIT, "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert name in out.stderr and "invalid configuration" in out.stderr
    assert "Traceback" not in out.stderr


def test_invalid_config_file_names_the_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "remit.toml"
    cfg.write_text('workers = "lots"\n')
    env = dict(CLEAN_ENV, REMIT_CONFIG=str(cfg))
    out = subprocess.run(
        [*REMIT, "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "REMIT_WORKERS" in out.stderr and str(cfg) in out.stderr
    cfg.write_text('adress = "127.0.0.1:1"\n')
    out = subprocess.run(
        [*REMIT, "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "REMIT_CONFIG" in out.stderr and "adress" in out.stderr


def test_redis_unreachable_then_back_health_and_metrics_say_so(tmp_path: Path) -> None:
    """Issue 5 faults as an operator sees them: Redis down at start -> serve local and say so
    (health detail, metric); Redis back and a bundle published -> the replica follows it;
    a corrupt bundle -> refused, counted, last good kept."""
    from remit.distribution.bundle import BundleStore, from_directory

    from tests.support.redis_server import RedisServer

    redis_port = free_port()
    s = Server({"REMIT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})
    redis_server = RedisServer(tmp_path, redis_port)
    try:
        s.wait_serving()
        env = dict(CLEAN_ENV, REMIT_ADDRESS=s.address)
        probe = [*REMIT, "health", "--json"]
        data = json.loads(
            subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60).stdout
        )
        assert (data["policy-origin"], data["redis"]) == ("local", "unreachable")
        assert metric(s.scrape(), "remit_redis_state", state="unreachable") == 1

        redis_server.start()
        store = BundleStore.from_url(redis_server.url)
        good = from_directory(ROOT / "policies" / "generated")
        store.publish(good)
        deadline = time.monotonic() + 10
        while True:
            data = json.loads(
                subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60).stdout
            )
            if (data["policy-origin"], data["redis"]) == ("redis", "connected"):
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.2)
        scrape = s.scrape()
        assert metric(scrape, "remit_redis_state", state="connected") == 1
        assert metric(scrape, "remit_policy_bundle_info", version=good.version, origin="redis") == 1

        # one byte changed, pushed past publish's own checks: refused and counted
        files = dict(good.files)
        files["torbay/policy.csv"] = files["torbay/policy.csv"].replace(b"200000", b"900000", 1)
        store.r.hset(store.key("bundle", "bad0000000000001", "files"), mapping=files)  # type: ignore[arg-type]
        store.r.set(
            store.key("bundle", "bad0000000000001", "manifest"),
            json.dumps(dict(good.manifest, version="bad0000000000001")),
        )
        store.r.set(store.key("active"), "bad0000000000001")
        store.r.publish(store.channel, "bad0000000000001")
        deadline = time.monotonic() + 10
        while metric(s.scrape(), "remit_policy_refused_total") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        data = json.loads(
            subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60).stdout
        )
        assert data["policy-version"] == good.version
        assert "refused" in data["policy-detail"]
    finally:
        s.kill()
        redis_server.stop()


def test_config_precedence_file_env_flag(tmp_path: Path) -> None:
    from remit import config as _config

    cfg = tmp_path / "remit.toml"
    cfg.write_text('address = "127.0.0.1:7001"\nworkers = 3\nthreads = 8\n')
    env = {"REMIT_CONFIG": str(cfg), "REMIT_WORKERS": "2"}
    c = _config.load(environ=env, flags={"address": "127.0.0.1:7002", "workers": None})
    assert (c.address, c.workers, c.threads) == ("127.0.0.1:7002", 2, 8)
    with pytest.raises(_config.ConfigError, match="--workers"):
        _config.load(environ={}, flags={"workers": "0"})
    with pytest.raises(_config.ConfigError, match="needs a fixed port"):
        _config.load(environ={"REMIT_ADDRESS": "127.0.0.1:0", "REMIT_WORKERS": "2"})


SUPERVISING_LOG = re.compile(r"supervising 2 workers on \S+: pids (\d+) (\d+)$", re.MULTILINE)


def test_workers_serve_from_two_pids() -> None:
    s = Server({"REMIT_WORKERS": "2"}, metrics_ports=2)
    try:
        spawned = s.wait_stderr(SUPERVISING_LOG.search).groups()
        # both workers have opened the shared port and report SERVING: no race with start-up
        serving = s.wait_serving(workers=2)
        assert sorted(serving) == sorted(int(p) for p in spawned)
        pids: set[str] = set()
        for _ in range(200):  # bounded: new connections until both workers have answered
            with grpc.insecure_channel(
                s.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                _, call = health_pb2_grpc.HealthStub(ch).Check.with_call(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                pids.update(v for k, v in call.trailing_metadata() if k == "remit-pid")
                resp = pb_grpc.AuthorisationServiceStub(ch).Authorise(EPO_ALLOW, timeout=5)
                assert resp.effect == pb.EFFECT_ALLOW
            if len(pids) >= 2:
                break
        assert pids == set(spawned), pids
        for pid in pids:  # both are workers of the supervisor we started
            stat = Path(f"/proc/{pid}/stat").read_text()
            assert int(stat.rsplit(")", 1)[1].split()[1]) == s.proc.pid
        # each worker serves its own metrics on metrics port + index
        first = urllib.request.urlopen(
            f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=5
        ).read()
        second = urllib.request.urlopen(
            f"http://127.0.0.1:{s.metrics_port + 1}/metrics", timeout=5
        ).read()
        assert b"remit_rpcs_total" in first and b"remit_rpcs_total" in second
        rc, _, err = s.stop()
    finally:
        s.kill()
    assert rc == 0, err
    assert err.count("stopped") == 2  # both workers shut down cleanly
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


def _wait_exit(pids: list[int], pidfds: list[int], timeout: float) -> list[int]:
    """Wait (on the kernel's word: a pidfd is readable once its process has exited) until
    every process has exited or the timeout passes; the pids still running."""
    poller = select.poll()
    running = dict(zip(pidfds, pids, strict=True))
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while running and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            running.pop(fd)
    return sorted(running.values())


@pytest.mark.parametrize("moment", ["starting", "serving"])
def test_no_worker_outlives_a_killed_supervisor(moment: str, tmp_path: Path) -> None:
    """SIGKILL the supervisor (no handler runs, nothing is forwarded): every worker exits by
    itself. "starting": each worker is held inside start-up, blocked reading a policy
    manifest that is a FIFO nobody writes, so the kill lands before it could have served
    or noted its parent; "serving": after both serve."""
    env = {"REMIT_WORKERS": "2"}
    if moment == "starting":
        os.mkfifo(tmp_path / "manifest.json")
        env["REMIT_POLICY_DIR"] = str(tmp_path)
    s = Server(env, metrics_ports=2)
    pids: list[int] = []
    pidfds: list[int] = []
    try:
        pids = [int(p) for p in s.wait_stderr(SUPERVISING_LOG.search).groups()]
        pidfds = [os.pidfd_open(pid) for pid in pids]  # before the kill: no pid reuse race
        if moment == "serving":
            s.wait_serving(workers=2)
        s.proc.kill()
        s.proc.wait(timeout=10)
        # a serving worker drains (0 s here) and lets calls finish within grace (10 s)
        still_running = _wait_exit(pids, pidfds, timeout=30)
        assert still_running == [], f"workers {still_running} outlived their supervisor"
        _, err = s.output()
        if moment == "starting":
            assert not SERVING_LOG.search(err), err  # they never served
    finally:
        for fd in pidfds:  # a failed run leaves no orphan (a pidfd never names a reused pid)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        s.kill()


def test_tracing_off_by_default_and_console_spans_carry_no_personal_data() -> None:
    for env, want_spans in (({}, False), ({"OTEL_TRACES_EXPORTER": "console"}, True)):
        s = Server(env)
        try:
            s.wait_serving()
            with grpc.insecure_channel(s.address) as ch:
                pb_grpc.AuthorisationServiceStub(ch).Authorise(EPO_ALLOW, timeout=5)
            # exit and stderr closed: the tracer was shut down (spans flushed) before "stopped"
            rc, out, err = s.stop()
        finally:
            s.kill()
        assert rc == 0, err
        assert err.rstrip().endswith("stopped"), err[-2000:]
        has_span = '"name": "remit.v1.AuthorisationService/Authorise"' in err
        assert has_span == want_spans, err[-2000:]
        if want_spans:
            assert '"remit.effect": "EFFECT_ALLOW"' in err and '"remit.council": "torbay"' in err
            assert "tm-secret" not in err and "peer" not in err and "client.address" not in err
            assert "exceptional_circumstances" not in err
        assert "tm-secret" in out  # the decision log (stdout) is where the actor id belongs


def test_span_attributes_are_a_fixed_list_without_personal_data() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from remit import config as _config
    from remit.audit.log import AuditLog, Pseudonymiser
    from remit.distribution.holder import PolicyHolder
    from remit.model.policy import load_dir
    from remit.server import tracing as _tracing
    from remit.server.serve import Deps, create_server

    from tests.support.sinks import MemorySink

    exporter = InMemorySpanExporter()
    tracing = _tracing.setup(_config.load(environ={}), exporter=exporter)
    assert tracing is not None
    assert _tracing.setup(_config.load(environ={})) is None  # off unless OTEL_* asks
    holder = PolicyHolder(load_dir(ROOT / "policies" / "generated"))
    server, port = create_server(
        "127.0.0.1:0",
        Deps(
            holder,
            audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
            tracing=tracing,
        ),
    )
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            stub.Authorise(EPO_ALLOW, timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.Authorise(
                    pb.AuthoriseRequest(
                        council="torbay",
                        decision="apply_epo",
                        actor=pb.Actor(id="tm-secret-43", roles=["nobody-x"]),
                    ),
                    timeout=5,
                )
    finally:
        server.stop(grace=None)
        tracing.shutdown()
    spans = exporter.get_finished_spans()
    rpc = "remit.v1.AuthorisationService/Authorise"
    # the answered call: its decision's span, then the call's; the refused call: no decision
    assert [sp.name for sp in spans] == ["remit.decision", rpc, rpc]
    rpc_attributes = {"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"}
    decision_attributes = {
        "remit.council",
        "remit.decision",
        "remit.effect",
        "remit.policy_version",
    }
    for sp in spans:
        want = decision_attributes if sp.name == "remit.decision" else rpc_attributes
        assert set(sp.attributes or {}) == want
        assert not sp.events  # no exception events (their messages may echo the request)
        assert "tm-secret" not in repr(sp.to_json()) and "nobody-x" not in repr(sp.to_json())
    decided, ok, bad = spans
    assert decided.parent is not None and decided.parent.span_id == ok.context.span_id
    assert decided.attributes is not None and decided.attributes["remit.effect"] == "EFFECT_ALLOW"
    assert ok.status.status_code.name != "ERROR"
    assert (
        bad.attributes is not None and bad.attributes["rpc.grpc.status_code"] == 3
    )  # INVALID_ARGUMENT
    assert bad.status.status_code.name == "ERROR"


def test_health_is_not_serving_until_told() -> None:
    from remit.audit.log import AuditLog, Pseudonymiser
    from remit.distribution.holder import PolicyHolder
    from remit.model.policy import load_dir
    from remit.server.serve import Deps, RemitHealth, create_server

    from tests.support.sinks import MemorySink

    holder = PolicyHolder(load_dir(ROOT / "policies" / "generated"))
    deps = Deps(
        holder,
        audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
        start_serving=False,
    )
    server, port = create_server("127.0.0.1:0", deps)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for name in ("", "remit.v1.AuthorisationService"):
                resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert isinstance(deps.health, RemitHealth)
            deps.health.set_all(health_pb2.HealthCheckResponse.SERVING)
            resp, call = stub.Check.with_call(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            detail = dict(call.trailing_metadata())
            assert detail["remit-policy-version"] == holder.current().version
            assert detail["remit-redis"] == "disabled"
    finally:
        server.stop(grace=None)
