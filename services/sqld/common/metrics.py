"""Prometheus metrics through prometheus-client: the /metrics endpoint and the gRPC server's metrics.

Every service serves GET /metrics on `--metrics-listen` (common.config.Common) from the
process's default registry, which also holds prometheus-client's process collector (CPU,
memory, open files) and Python's GC and platform collectors. Each service defines its own
metrics once, in its `metrics.py`, named `sqld_<svc>_*`; the gRPC server metrics every
service shares are here, named `sqld_grpc_server_*` with the method's full name as `rpc`
(so one dashboard query covers every service). Counters are counters (`_total`), levels are
gauges, durations histograms; the library escapes label values.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

RPC_REQUESTS = Counter("sqld_grpc_server_requests_total", "gRPC calls received, per method", ["rpc"])
RPC_ERRORS = Counter("sqld_grpc_server_errors_total", "gRPC calls that ended with a status other than OK, per method and code",
                     ["rpc", "code"])
RPC_SECONDS = Histogram("sqld_grpc_server_handling_seconds", "time to answer a unary gRPC call, per method", ["rpc"])

# The SQLSTATE classes a dashboard shows by name; the label is the class's two characters.
def sqlstate_class(state: str) -> str:
    return (state or "XX")[:2]


def serve(listen: str) -> Callable[[], None]:
    """Serve GET /metrics on `listen` ("host:port") from a thread of prometheus-client; the
    function that stops it. Exits with a message when the address cannot be bound."""
    host, _, port = listen.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot serve metrics on {listen}: {getattr(exc, 'strerror', None) or exc}; "
                         "choose another address with --metrics-listen") from None
    log.info("serving metrics listen=%s path=/metrics", listen)
    return server.shutdown


def _code(context: Any, exc: BaseException | None) -> str:
    code = None
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - an old context without code(): judge by the exception
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if exc is None:
        return "OK"
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return exc.code().name
    return "CANCELLED" if isinstance(exc, BaseException) and type(exc).__name__ == "CancelledError" else "UNKNOWN"


def _wrap(rpc: str, behavior: Callable[..., Any], unary: bool) -> Callable[..., Any]:
    def ended(context: Any, exc: BaseException | None) -> None:
        code = _code(context, exc)
        if code != "OK":
            RPC_ERRORS.labels(rpc, code).inc()

    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: Any) -> Any:
            RPC_REQUESTS.labels(rpc).inc()
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                ended(context, exc)
                raise
            ended(context, None)
        return stream

    async def call(request: Any, context: Any) -> Any:
        RPC_REQUESTS.labels(rpc).inc()
        start = time.perf_counter()
        try:
            result = await behavior(request, context)
        except BaseException as exc:
            ended(context, exc)
            raise
        if unary:
            RPC_SECONDS.labels(rpc).observe(time.perf_counter() - start)
        ended(context, None)
        return result
    return call


class RpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every call and every non-OK ending per method (the outermost interceptor, so
    calls refused by common.authz count too)."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                                handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        rpc = handler_call_details.method
        for attr in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, attr)
            if behavior is not None:
                return handler._replace(**{attr: _wrap(rpc, behavior, attr == "unary_unary")})
        return handler
