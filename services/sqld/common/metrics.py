"""A Prometheus text endpoint (GET /metrics) on asyncio, with no dependency beyond the stdlib.

A service passes a function that renders its current metrics; names follow sqld_<svc>_*.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Sample = tuple[str, dict[str, str], float]  # name, labels, value


def render(samples: Iterable[Sample], help_text: dict[str, str]) -> str:
    """Prometheus text exposition format, one HELP/TYPE block per metric name."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s[0], []).append(s)
    out = []
    for name in sorted(set(help_text) | set(by_name)):
        out.append(f"# HELP {name} {help_text.get(name, name)}")
        out.append(f"# TYPE {name} gauge")
        for _, labels, value in by_name.get(name, []):
            lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return "\n".join(out) + "\n"


async def serve(listen: str, body: Callable[[], str]) -> asyncio.base_events.Server:
    """Answer GET /metrics on `listen` ("host:port") until the returned server is closed."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path.split(b"?")[0] == b"/metrics":
                status, payload = "200 OK", body().encode()
            else:
                status, payload = "404 Not Found", b"try /metrics\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    host, _, port = listen.rpartition(":")
    server = await asyncio.start_server(handle, host or "127.0.0.1", int(port))
    log.info("serving metrics on http://%s/metrics", listen)
    return server
