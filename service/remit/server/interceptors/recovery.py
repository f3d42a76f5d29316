"""Recovery: any unexpected exception becomes INTERNAL with an error id; never an answer."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from remit.server.interceptors._handlers import Behaviour, StreamBehaviour, aborted, wrap

log = logging.getLogger("remit.server")


class RecoveryInterceptor(grpc.ServerInterceptor):
    """It keeps the wrapped chain per method: the interceptors inside it depend only on the
    method name (never on per-call details), so the chain is built once per method instead
    of on every call. Unknown methods are not kept."""

    def __init__(self) -> None:
        self._chains: dict[str, Any] = {}

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        chain = self._chains.get(details.method)
        if chain is None:
            chain = self._build(continuation, details)
            if chain is not None:
                self._chains[details.method] = chain
        return chain

    def _build(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        def fail(context: grpc.ServicerContext) -> None:
            error_id = uuid.uuid4().hex[:12]
            log.exception("internal error %s in %s", error_id, method)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error {error_id}; no decision was made"
            )

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner(request, context)
                except Exception:
                    if aborted(context):
                        raise
                    fail(context)

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner(requests, context)
                except Exception:
                    if aborted(context):
                        raise
                    fail(context)

            return behaviour

        return wrap(continuation(details), unary, stream)
