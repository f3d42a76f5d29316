"""``remit serve --workers N``: N server processes sharing one port (SO_REUSEPORT).

One Python process uses about one core, so on one host throughput scales by processes. The
supervisor starts N fresh interpreters (``python -m remit.cli serve``; gRPC does not survive
``fork`` after it has started threads, so the workers are spawned, not forked), each with
the validated config in its environment and ``REMIT_WORKER_INDEX`` set, which turns on
``grpc.so_reuseport`` and puts its metrics on port + index. The kernel spreads new
connections across the workers.

The supervisor forwards SIGTERM/SIGINT to every worker and waits for them (each drains and
finishes in-flight calls itself), killing any still running after drain + grace + 10 s.
If a worker dies on its own the supervisor stops the others and exits 1: the orchestrator
restarts the whole unit rather than running short-handed unseen. Exit 0 only when every
worker exited 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from remit.config import CONFIG_FILE_ENV, Config

log = logging.getLogger("remit.workers")


def config_env(config: Config) -> dict[str, str]:
    """The config as environment variables (every field, so the child reads the same)."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(Config):
        value = getattr(config, f.name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f.metadata["env"]] = text
    return env


def supervise(config: Config) -> int:
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping %d worker(s)", signum, config.workers)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    children: list[subprocess.Popen[bytes]] = []
    for index in range(config.workers):
        env = {k: v for k, v in os.environ.items() if k != CONFIG_FILE_ENV}
        env.update(config_env(config.for_worker(index)))
        children.append(subprocess.Popen([sys.executable, "-m", "remit.cli", "serve"], env=env))
    log.info(
        "supervising %d workers on %s: pids %s",
        len(children),
        config.address,
        " ".join(str(c.pid) for c in children),
    )
    failed = False
    while not stop.wait(0.2):
        dead = [c for c in children if c.poll() is not None]
        if dead:
            for c in dead:
                log.error("worker pid %d exited %s; stopping the others", c.pid, c.returncode)
            failed = True
            break
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + config.shutdown_drain_seconds + config.shutdown_grace_seconds + 10
    for c in children:
        try:
            c.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop in time; killing it", c.pid)
            c.kill()
            c.wait(timeout=10)
            failed = True
    codes = [c.returncode for c in children]
    log.info("workers exited %s", codes)
    return 1 if failed or any(code != 0 for code in codes) else 0
