"""Configuration: one frozen dataclass per service, loaded as flag > SQLD_<SVC>_* env > default.

Every field of a service's config dataclass becomes a flag (`--idle-timeout`) and an
environment variable (`SQLD_SCHEDULER_IDLE_TIMEOUT`). `load(cls, argv, environ)` takes
plain lists and dicts so that tests can build configs without touching the process.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _convert(kind: Any, raw: str) -> Any:
    if kind in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (tuple, "tuple[str, ...]"):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def load(cls: type[T], service: str, argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from command-line flags, then SQLD_<SERVICE>_<FIELD> variables, then defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog=f"python -m {service}",
                                     description=(cls.__doc__ or "").strip().splitlines()[0])
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        env = f"SQLD_{service.upper()}_{f.name.upper()}"
        default = f.default if f.default is not dataclasses.MISSING else \
            f.default_factory() if callable(f.default_factory) else None
        help_text = f"{f.metadata.get('help', '')} (env {env}; default {default!r})"
        parser.add_argument(_flag(f.name), dest=f.name, default=None, help=help_text)
    args = parser.parse_args(list(argv or []))
    values: dict[str, Any] = {}
    for f in fields:
        raw = getattr(args, f.name)
        if raw is None:
            raw = environ.get(f"SQLD_{service.upper()}_{f.name.upper()}")
        if raw is not None:
            try:
                values[f.name] = _convert(f.type, raw)
            except ValueError:
                parser.error(f"{_flag(f.name)}: cannot read {raw!r} as {f.type}")
    return cls(**values)
