"""Run the AuthZEN application on uvicorn, in a thread beside the gRPC server.

``start_http(address, deps, tls)`` binds the socket itself (so port 0 gives a free port at
once), then serves on its own event loop in a daemon thread; ``HttpServer.stop()`` asks
uvicorn to finish in-flight requests and waits for the thread. The same start-up checks as
gRPC (:func:`remit.server.access.check_transport`, one place for both): plaintext only on
loopback (or with ``allow_plaintext``), mTLS only with an access file and never with dev
tokens. With a client CA the TLS handshake requires a client certificate signed by it (as
gRPC's), and :class:`PeerCertificateProtocol` hands its typed names to the application, which
resolves the caller from them exactly as gRPC does
(:meth:`remit.server.access.AccessPolicy.resolve_names`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from remit.server.access import certificate_names, check_transport
from remit.server.http.app import PEER_NAMES, HttpDeps, create_app

LOOPBACK_PREFIXES = ("127.", "localhost", "[::1]", "::1")


class PeerCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the verified client certificate's typed names (``cn:``,
    ``dns:``...; none without one) in every request's ``scope["state"]`` of the connection.
    The names are read once, when the TLS handshake has completed."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if isinstance(tls, ssl.SSLObject) else None
        names = certificate_names(ssl.DER_cert_to_PEM_cert(der)) if der else ()
        self.app_state = {**self.app_state, PEER_NAMES: names}


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
    tls = cert is not None and key is not None
    check_transport(
        "HTTP",
        address,
        host.startswith(LOOPBACK_PREFIXES),
        tls,
        tls and client_ca is not None,
        deps.access,
        allow_plaintext,
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
        ssl_certfile=str(cert) if tls else None,
        ssl_keyfile=str(key) if tls else None,
        ssl_ca_certs=str(client_ca) if tls and client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and client_ca else ssl.CERT_NONE,
        http=PeerCertificateProtocol,
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
