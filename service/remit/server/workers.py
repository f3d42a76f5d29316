"""``remit serve --workers N``: N server processes sharing one port (SO_REUSEPORT).

One Python process uses about one core, so on one host throughput scales by processes. The
supervisor starts N fresh interpreters (``python -m remit.server.workers``, below; gRPC does
not survive ``fork`` after it has started threads, so the workers are spawned, not forked),
each with the validated config in its environment and ``REMIT_WORKER_INDEX`` set, which turns on
``grpc.so_reuseport`` and puts its metrics on port + index. The kernel spreads new
connections across the workers.

The supervisor forwards SIGTERM/SIGINT to every worker and waits for them (each drains and
finishes in-flight calls itself), killing any still running after drain + grace + 10 s.
If a worker dies on its own the supervisor stops the others and exits 1: the orchestrator
restarts the whole unit rather than running short-handed unseen. Exit 0 only when every
worker exited 0.

A worker never outlives its supervisor. Before spawning, the supervisor opens a pipe and keeps
its write end (it never writes to it); every worker inherits only the read end and, as its
first act (``python -m remit.server.workers --supervisor-fd N``, before it imports gRPC or
loads a policy), starts a thread blocked reading it. The kernel closes the write end when the
supervisor dies, however it dies (SIGKILL included), and the read then returns end-of-file,
which the worker answers by sending itself SIGTERM: still starting, it ends at once (default
action); already serving, it shuts down as for any SIGTERM (drain, grace, flush). End-of-file
is sticky, so a supervisor that dies between spawning a worker and the worker's first
instruction is noticed too: there is no window in which the worker could record the wrong
parent, which is what polling ``getppid()`` after start-up got wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

from remit.config import CONFIG_FILE_ENV, Config, ConfigError, load

log = logging.getLogger("remit.workers")
SUPERVISOR_FD_FLAG = "--supervisor-fd"


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
    """Run ``config.workers`` workers until SIGTERM/SIGINT or a worker's exit; the exit code."""
    # Signals reach the loop through a pipe (signal.set_wakeup_fd): the handler itself does
    # nothing, because a lock taken in a handler (Event.set) deadlocks if the signal lands
    # while the main thread holds the same lock (inside Event.wait).
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _noted) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    # The workers hold the read end; the write end stays open here, never written, until the
    # supervisor ends: its closing (however the supervisor dies) tells them it is gone.
    lifeline_read, lifeline_write = os.pipe()
    try:
        try:
            for index in range(config.workers):
                env = {k: v for k, v in os.environ.items() if k != CONFIG_FILE_ENV}
                env.update(config_env(config.for_worker(index)))
                command = [sys.executable, "-m", "remit.server.workers"]
                command += [SUPERVISOR_FD_FLAG, str(lifeline_read)]
                children.append(subprocess.Popen(command, env=env, pass_fds=(lifeline_read,)))
        finally:
            os.close(lifeline_read)
        log.info(
            "supervising %d workers on %s: pids %s",
            len(children),
            config.address,
            " ".join(str(c.pid) for c in children),
        )
        exited_alone = _wait_for_signal_or_exit(children, wake_read, config.workers)
        stop_failed = _stop_workers(children, config)
        return 1 if exited_alone or stop_failed else 0
    finally:
        os.close(lifeline_write)
        signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        os.close(wake_read)
        os.close(wake_write)


def _noted(_signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT handler: the wakeup pipe already carries the signal to the loop."""


def _wait_for_signal_or_exit(
    children: list[subprocess.Popen[bytes]], wake_read: int, workers: int
) -> int:
    """Block until a signal arrives (0) or a worker exits on its own (1). No polling where
    the kernel has pidfds: each child's pidfd becomes readable when it exits."""
    poller = select.poll()
    poller.register(wake_read, select.POLLIN)
    pidfds: list[int] = []
    timeout_ms: int | None = None
    try:
        for c in children:
            fd = os.pidfd_open(c.pid)
            pidfds.append(fd)
            poller.register(fd, select.POLLIN)
    except (AttributeError, OSError):  # no pidfd_open (old kernel): look every 200 ms
        timeout_ms = 200
    try:
        while True:
            events = poller.poll(timeout_ms)
            if any(fd == wake_read for fd, _ in events):
                signum = os.read(wake_read, 64)[0]
                log.info("signal %d: stopping %d worker(s)", signum, workers)
                return 0
            dead = [c for c in children if c.poll() is not None]
            if dead:
                for c in dead:
                    log.error("worker pid %d exited %s; stopping the others", c.pid, c.returncode)
                return 1
    finally:
        for fd in pidfds:
            os.close(fd)


def _stop_workers(children: list[subprocess.Popen[bytes]], config: Config) -> int:
    """SIGTERM every running worker and wait (drain + grace + 10 s, then SIGKILL); 1 when
    any had to be killed or exited non-zero, else 0."""
    failed = False
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


def watch_supervisor(fd: int) -> threading.Thread:
    """Send this process SIGTERM once the supervisor's end of the lifeline pipe closes."""

    def watch() -> None:
        try:
            while os.read(fd, 64):  # the supervisor never writes; b"" is end-of-file
                pass
        except OSError:
            pass  # a read error means the pipe is unusable: treat it as the supervisor gone
        log.error("the supervisor is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="remit-supervisor-watch", daemon=True)
    thread.start()
    return thread


def worker_main(argv: list[str]) -> int:
    """One worker process: watch the supervisor first, then load the config and serve."""
    if len(argv) != 2 or argv[0] != SUPERVISOR_FD_FLAG or not argv[1].isdigit():
        print(f"usage: python -m remit.server.workers {SUPERVISOR_FD_FLAG} FD", file=sys.stderr)
        return 2
    watch_supervisor(int(argv[1]))  # first, so no start-up step can outlive the supervisor
    from remit.server.serve import serve_forever  # imports gRPC: after the watch is on

    try:
        config = load()
    except ConfigError as exc:
        print(f"remit serve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return serve_forever(config)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
