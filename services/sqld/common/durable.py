"""Small files that must survive kill -9 and power loss: written whole or not at all.

Used by the replication log (meta.json) and the storage primary's capture state (log id,
primary id, fork marker): write a temporary file, fsync it, rename it over the old one, then
fsync the folder so that the rename itself is durable.
"""
from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
