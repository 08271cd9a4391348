"""Reading ResultParts (common.proto): rows whose large values were split across parts are
joined again, one row at a time, so a reader holds at most one row beyond the part in hand."""
from __future__ import annotations

from sqld.v1 import common_pb2


class RowJoiner:
    """Feed a statement's parts in order; get back its complete rows."""

    def __init__(self) -> None:
        # A row cut inside its last value: the values before it, that value's pieces, its class.
        self._pending: tuple[list[common_pb2.Value], list, str] | None = None

    def feed(self, part: common_pb2.ResultPart) -> list[common_pb2.Row]:
        out: list[common_pb2.Row] = []
        rows = part.rows
        last = len(rows) - 1
        for i, r in enumerate(rows):
            cut = part.continues and i == last
            if not cut and (i or self._pending is None):  # the common case: a whole row
                out.append(r)
                continue
            values = list(r.values)
            if i == 0 and self._pending is not None:
                before, pieces, kind = self._pending
                self._pending = None
                pieces.append(getattr(values[0], kind))
                if cut and len(values) == 1:  # one more piece of the same value
                    self._pending = (before, pieces, kind)
                    continue
                joined = (common_pb2.Value(text="".join(pieces)) if kind == "text"
                          else common_pb2.Value(blob=b"".join(pieces)))
                values = before + [joined] + values[1:]
            if cut:
                tail = values.pop()
                kind = tail.WhichOneof("value") or "blob"
                self._pending = (values, [getattr(tail, kind)], kind)
                continue
            out.append(common_pb2.Row(values=values))
        return out
