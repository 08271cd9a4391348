"""Logging: one line per record, logfmt-style keys, quiet by default.

Level comes from SQLD_LOG_LEVEL (default INFO; services log only start, stop and
failures at INFO). SQL text is never logged above DEBUG.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time


class _LogfmtFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
        line = (f'ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} '
                f'svc={self.service} logger={record.name} msg="{msg}"')
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


def _not_a_cancelled_rpc(record: logging.LogRecord) -> bool:
    """grpc.aio reports an RPC cancelled while being scheduled (a peer or this server shutting
    down at the same moment, e.g. on Ctrl-C) as an unhandled CancelledError at ERROR; it is not
    an error of ours, so it is dropped."""
    exc = record.exc_info[1] if record.exc_info else None
    text = record.getMessage() + (record.exc_text or "")
    return not (isinstance(exc, asyncio.CancelledError) or
                ("Exception not handled" in text and "CancelledError" in text))


def setup(service: str) -> None:
    level = os.environ.get("SQLD_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("grpc").setLevel(logging.WARNING)
    logging.getLogger("grpc._cython.cygrpc").addFilter(_not_a_cancelled_rpc)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
