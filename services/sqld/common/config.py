"""Configuration: one frozen dataclass per service, loaded through pydantic-settings.

Every field of a service's config dataclass is a setting with one name in three places:
the flag `--wait-timeout`, the environment variable `SQLD_SCHEDULER_WAIT_TIMEOUT`, and the key
`wait_timeout` in the `[scheduler]` table of an optional TOML file (`--config FILE`, or
`SQLD_SCHEDULER_CONFIG`). Precedence: flag > environment > file > default.

Values are typed and validated by pydantic (the dataclass annotations are the types; a
`Literal[...]` lists the allowed words): `SQLD_EDGE_TLS_REQUIRED=ture` or `--max-sessions many`
stops the service with a message naming the setting, exit code 2, as argparse does for a
usage error. A bool flag may stand alone (`--tls-required` means true) or take a value
(`--tls-required false`). A tuple setting is a comma-separated list (`--databases a,b`) in
flags and environment, a TOML array in the file.

`load(cls, service, argv, environ)` takes plain lists and dicts so that tests build configs
without touching the process. Each service's config.py keeps declaring its settings, with
help text, as a dataclass; the pydantic model is derived from it here, and the loaded values
come back as that dataclass (frozen, usable with dataclasses.replace).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

T = TypeVar("T")

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["logfmt", "json"]


@dataclasses.dataclass(frozen=True)
class Common:
    """The settings every service has: how it logs, what it calls itself, where it exports metrics."""

    log_level: LogLevel = dataclasses.field(default="info", metadata={"help": "debug, info (start, stop, failures), warning or error"})
    log_format: LogFormat = dataclasses.field(default="logfmt", metadata={"help": "logfmt (key=value, one line per event) or json (one object per line)"})
    role: str = dataclasses.field(default="", metadata={"help": "this process's name in its deployment, logged on every line (the launcher passes primary, replica1, ...)"})
    metrics_listen: str = dataclasses.field(default="", metadata={"help": "host:port for Prometheus metrics (GET /metrics); empty: none"})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(service: str, name: str) -> str:
    return f"SQLD_{service.upper()}_{name.upper()}"


def _split_commas(raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def _lower(raw: Any) -> Any:
    return raw.strip().lower() if isinstance(raw, str) else raw


def _annotation(kind: Any) -> Any:
    """The pydantic type of a dataclass field: comma lists for tuples, words in any case for Literals."""
    if typing.get_origin(kind) is tuple:
        return Annotated[kind, NoDecode, pydantic.BeforeValidator(_split_commas)]
    if typing.get_origin(kind) is Literal and all(isinstance(a, str) for a in typing.get_args(kind)):
        return Annotated[kind, pydantic.BeforeValidator(_lower)]
    return kind


class _Env(EnvSettingsSource):
    """Environment variables from the given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class _TomlTable(TomlConfigSettingsSource):
    """The `[service]` table of a TOML file; a key that names no setting is an error."""

    def __init__(self, settings_cls: type[BaseSettings], path: str, table: str) -> None:
        self._table = table
        self._names = set(settings_cls.model_fields)
        super().__init__(settings_cls, Path(path))

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        data = super()._read_file(file_path).get(self._table, {})
        unknown = sorted(set(data) - self._names)
        if unknown:
            raise ValueError(f"[{self._table}] in {file_path}: no setting named {', '.join(unknown)}")
        return dict(data)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if callable(f.default_factory) else None


def _fields(cls: type) -> dict[str, Any]:
    """pydantic field definitions of a config dataclass: type, default, help text."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = _default(f)
        fields[f.name] = (_annotation(hints[f.name]),
                          pydantic.Field(default=default, description=f.metadata.get("help", "")))
    return fields


def parser_for(cls: type, service: str) -> argparse.ArgumentParser:
    """The argparse parser of `cls`'s flags (every value a string, validated later by pydantic)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    parser = argparse.ArgumentParser(prog=f"python -m sqld.{service}",
                                     description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"TOML file whose [{service}] table sets defaults "
                             f"(env {env_name(service, 'config')}); flags and environment override it")
    for f in dataclasses.fields(cls):
        default = _default(f)
        help_text = f"{f.metadata.get('help', '')} (env {env_name(service, f.name)}; default {default!r})"
        if hints[f.name] is bool:
            parser.add_argument(flag(f.name), dest=f.name, default=None, nargs="?", const="true",
                                metavar="BOOL", help=help_text)
        else:
            parser.add_argument(flag(f.name), dest=f.name, default=None, help=help_text)
    return parser


def _fail(prog: str, message: str) -> typing.NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load(cls: type[T], service: str, argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from flags, then SQLD_<SERVICE>_<FIELD> variables, then the config file's
    [service] table, then defaults. A bad value exits with code 2 and names the setting."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    parser = parser_for(cls, service)
    args = vars(parser.parse_args(list(argv or [])))
    config_file = args.pop("config") or env.get(env_name(service, "config"))
    flags = {k: v for k, v in args.items() if v is not None}
    prefix = f"SQLD_{service.upper()}_"
    names = {f.name for f in dataclasses.fields(cls)} | {"config"}  # type: ignore[arg-type]
    unknown = sorted(k for k in env if k.upper().startswith(prefix) and k[len(prefix):].lower() not in names)
    if unknown:  # a misspelt variable would otherwise be ignored without a word
        _fail(parser.prog, f"no setting named {', '.join(unknown)} (python -m sqld.{service} --help lists them)")
    if config_file and not os.path.isfile(config_file):
        _fail(parser.prog, f"--config {config_file}: " + ("not a file" if os.path.exists(config_file) else "no such file"))

    class Sources(BaseSettings):
        model_config = SettingsConfigDict(env_prefix=f"SQLD_{service.upper()}_", case_sensitive=False,
                                          extra="forbid", frozen=True)

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       *_: PydanticBaseSettingsSource, **__: Any) -> tuple[PydanticBaseSettingsSource, ...]:
            out: list[PydanticBaseSettingsSource] = [InitSettingsSource(settings_cls, flags), _Env(settings_cls, env)]
            if config_file:
                out.append(_TomlTable(settings_cls, config_file, service))
            return tuple(out)

    model = pydantic.create_model(f"{cls.__name__}Settings", __base__=Sources, **_fields(cls))
    try:
        settings = model()
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            where = f"{flag(name)} / {env_name(service, name)}" + (f" / [{service}] {name} in {config_file}" if config_file else "")
            problems.append(f"setting {name} ({where}): {err['msg']}, got {err.get('input')!r}")
        _fail(parser.prog, "; ".join(problems))
    except (OSError, ValueError) as exc:  # the config file: missing, not TOML, unknown keys
        _fail(parser.prog, f"--config {config_file}: {exc}")
    return cls(**settings.model_dump())
