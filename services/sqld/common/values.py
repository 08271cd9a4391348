"""SQLite values ↔ the proto Value (five storage classes), for services that hold Python values."""
from __future__ import annotations

from typing import Any

from sqld.v1 import common_pb2


def to_python(v: common_pb2.Value) -> Any:
    kind = v.WhichOneof("value")
    if kind is None or kind == "null":
        return None
    return getattr(v, kind)


def to_value(x: Any) -> common_pb2.Value:
    if x is None:
        return common_pb2.Value(null=True)
    if isinstance(x, int):
        return common_pb2.Value(integer=x)
    if isinstance(x, float):
        return common_pb2.Value(real=x)
    if isinstance(x, str):
        return common_pb2.Value(text=x)
    return common_pb2.Value(blob=bytes(x))
