"""Logging through structlog: one line per event with real key=value fields, quiet by default.

Every line starts `ts=... level=... svc=<service>` and, when the process was given a role
(`--role`; the launcher passes the plan's names), `role=primary|replica1|...` for storage and
`site=primary|replica` for an edge or scheduler; then `msg`, the event's fields and `logger`.
`--log-format json` writes the same fields as one JSON object per line. Values are quoted
and escaped by structlog's renderers (quotes, backslashes, newlines), so every line parses.

Modules keep the stdlib call `logging.getLogger(__name__).info("database open db=%s path=%s",
name, path)`: a message written as words followed by `key=%s` pairs becomes the event
`msg="database open"` with the fields `db=` and `path=` taken from the arguments (so a value
with spaces or newlines stays one field); any other message is kept whole as `msg`. Code may
also call `structlog.stdlib.get_logger(__name__).info("event", key=value)` directly.

At INFO (the default; `--log-level`) services log start, stop, failures and the lines an
operator asked for (the edge's log_connections, log_min_duration_statement); SQL text only in
those and at DEBUG.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

# The log key naming a process's role, per service: edges and schedulers belong to a site.
_ROLE_KEY = {"edge": "site", "scheduler": "site"}

_KEY = re.compile(r"[A-Za-z_][\w.]*=")
_DIRECTIVE = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrgGeExXo]")


def _field(directive: str, arg: Any) -> Any:
    if directive in ("%s", "%d") and isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return arg
    if directive == "%s":
        return str(arg)
    return directive % (arg,)


def split_fields(msg: object, args: Any) -> tuple[str, dict[str, Any]] | None:
    """("database open", {"db": "main", ...}) for a %-style message of words then key=%x pairs
    (or key=literal); None when the message does not have that shape."""
    if not isinstance(msg, str) or (args and not isinstance(args, tuple)):
        return None
    args = args or ()
    tokens = msg.split(" ")
    first = next((i for i, t in enumerate(tokens) if _KEY.match(t)), None)
    if first is None:
        return None
    fields: dict[str, Any] = {}
    used = 0
    for token in tokens[first:]:
        key, eq, value = token.partition("=")
        if not eq or not _KEY.match(token) or key in fields:
            return None
        if "%" in value:
            if not _DIRECTIVE.fullmatch(value) or used >= len(args):
                return None
            fields[key] = _field(value, args[used])
            used += 1
        else:
            fields[key] = value
    if used != len(args) or "%" in " ".join(tokens[:first]):
        return None
    return " ".join(tokens[:first]), fields


def _lift_stdlib_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None and not event_dict.get("_from_structlog"):
        split = split_fields(record.msg, event_dict.pop("positional_args", ()))
        if split is not None:
            text, fields = split
            event_dict["event"] = text
            for key, value in fields.items():
                event_dict.setdefault(key, value)
        event_dict["logger"] = record.name
    return event_dict


def _drop_positional_args(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("positional_args", None)
    return event_dict


def _logger_last(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if "logger" in event_dict:
        event_dict["logger"] = event_dict.pop("logger")
    if "exception" in event_dict:
        event_dict["exc"] = event_dict.pop("exception")
    return event_dict


def _not_a_cancelled_rpc(record: logging.LogRecord) -> bool:
    """grpc.aio reports an RPC cancelled while being scheduled (a peer or this server shutting
    down at the same moment, e.g. on Ctrl-C) as an unhandled CancelledError at ERROR; it is not
    an error of ours, so it is dropped."""
    exc = record.exc_info[1] if record.exc_info else None
    text = record.getMessage() + (record.exc_text or "")
    return not (isinstance(exc, asyncio.CancelledError) or
                ("Exception not handled" in text and "CancelledError" in text))


def formatter(service: str, role: str = "", fmt: str = "logfmt") -> logging.Formatter:
    """The stdlib formatter that renders a record (from logging or structlog) as one line."""
    role_key = _ROLE_KEY.get(service, "role")
    context = {"svc": service, **({role_key: role} if role else {})}

    def add_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        return {**{k: event_dict.pop(k) for k in ("ts", "level") if k in event_dict}, **context, **event_dict}

    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _lift_stdlib_fields,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json" else
                     structlog.processors.LogfmtRenderer(key_order=["ts", "level", "svc", role_key, "msg"],
                                                         drop_missing=True, bool_as_flag=False))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_positional_args,
            add_context,
            structlog.processors.format_exc_info,
            _logger_last,
            structlog.processors.EventRenamer("msg"),
            renderer,
        ])


def setup(service: str, cfg: Any = None) -> None:
    """Route every log record of the process (stdlib and structlog) to stderr, one line each.
    `cfg` is the service's config (common.config.Common: log_level, log_format, role)."""
    level = getattr(cfg, "log_level", "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(service, getattr(cfg, "role", ""), getattr(cfg, "log_format", "logfmt")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.add_logger_name,
                    structlog.stdlib.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)
    logging.getLogger("grpc").setLevel(logging.WARNING)
    logging.getLogger("grpc._cython.cygrpc").addFilter(_not_a_cancelled_rpc)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
