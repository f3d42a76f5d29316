"""Run the AuthZEN application on uvicorn, in a thread beside the gRPC server.

``start_http(address, deps, tls)`` binds the socket itself (so port 0 gives a free port at
once), then serves on its own event loop in a daemon thread; ``HttpServer.stop()`` asks
uvicorn to finish in-flight requests and waits for the thread. The same start-up checks as
gRPC: plaintext only on loopback (or with ``allow_plaintext``). mTLS is not offered over
HTTP in this first cut (uvicorn does not hand the peer certificate to the application), so
a client CA refuses the HTTP port rather than serving it without the caller's identity.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from remit.server.http.app import HttpDeps, create_app

LOOPBACK_PREFIXES = ("127.", "localhost", "[::1]", "::1")


@dataclass
class HttpServer:
    """A running AuthZEN HTTP server: its port, and how to stop it."""

    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Finish in-flight requests and stop."""
        self.server.should_exit = True
        self.thread.join(timeout)


def start_http(
    address: str,
    deps: HttpDeps,
    cert: Path | None = None,
    key: Path | None = None,
    client_ca: Path | None = None,
    allow_plaintext: bool = False,
) -> HttpServer:
    """Serve AuthZEN on ``address`` (HOST:PORT); raises ValueError when unsafe to."""
    host, _, port = address.rpartition(":")
    if client_ca is not None:
        raise ValueError(
            "REMIT_HTTP_ADDRESS with REMIT_TLS_CLIENT_CA: mTLS caller identities are not "
            "available over HTTP yet; serve AuthZEN behind a gateway that terminates mTLS"
        )
    plaintext = cert is None or key is None
    if plaintext and not host.startswith(LOOPBACK_PREFIXES) and not allow_plaintext:
        raise ValueError(
            f"refusing plaintext HTTP on {address}: set REMIT_TLS_CERT/REMIT_TLS_KEY, "
            "or REMIT_ALLOW_PLAINTEXT=1 to accept the risk"
        )
    if deps.access.open and cert is not None and not host.startswith(LOOPBACK_PREFIXES):
        raise ValueError(
            f"refusing HTTPS on {address} with no REMIT_ACCESS_FILE: every caller could "
            "query every council"
        )
    bind = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it the body waits behind the headers for the client's delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, int(port)))
    sock.listen(128)
    config = uvicorn.Config(
        create_app(deps),
        log_level="warning",
        access_log=False,  # the decision log is the record; no URLs or bodies in logs
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        started.set()
        loop.run_until_complete(server.serve(sockets=[sock]))
        loop.close()

    thread = threading.Thread(target=run, name="remit-http", daemon=True)
    thread.start()
    started.wait()
    return HttpServer(sock.getsockname()[1], server, thread)
