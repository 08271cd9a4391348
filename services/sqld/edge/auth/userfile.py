"""The users file: one `name:secret` line per user, secrets stored as PostgreSQL stores them.

    # comment
    alice:SCRAM-SHA-256$4096:<salt base64>$<StoredKey base64>:<ServerKey base64>
    bob:md5<md5 hex of password + user name>
    carol:plain:<the password itself>

A SCRAM verifier serves SCRAM-SHA-256 and cleartext; an md5 hash serves md5 and cleartext;
a plain password serves every method (handy in tests, not recommended). `python -m sqld.edge.auth
NAME` prints a SCRAM line. The name ends at the first ':', so names cannot contain one.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata
from dataclasses import dataclass
from pathlib import Path

SCRAM_ITERATIONS = 4096
_MD5 = re.compile(r"md5[0-9a-f]{32}")
_SCRAM = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


class UsersFileError(ValueError):
    """The users file cannot be read or has a line we do not understand."""


@dataclass(frozen=True)
class ScramVerifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def text(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return (f"SCRAM-SHA-256${self.iterations}:{b64(self.salt)}"
                f"${b64(self.stored_key)}:{b64(self.server_key)}")


@dataclass(frozen=True)
class Secret:
    """What the server knows about one user's password: exactly one field is set."""
    scram: ScramVerifier | None = None
    md5: str | None = None         # "md5" + hex, as PostgreSQL stores it
    plain: str | None = None


def saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep, falling back to the raw bytes when the string is not valid, as PostgreSQL does."""
    mapped = "".join("" if stringprep.in_table_b1(c) else " " if stringprep.in_table_c12(c) else c
                     for c in password)
    norm = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    if any(test(c) for c in norm for test in prohibited):
        return password.encode()
    if any(stringprep.in_table_d1(c) for c in norm):
        # RandALCat text must not contain LCat characters and must start and end with RandALCat
        if any(stringprep.in_table_d2(c) for c in norm) or not (
                stringprep.in_table_d1(norm[0]) and stringprep.in_table_d1(norm[-1])):
            return password.encode()
    return norm.encode()


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)


def scram_keys(salted: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) from a SaltedPassword (RFC 5802 section 3)."""
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password: str, salt: bytes | None = None,
                   iterations: int = SCRAM_ITERATIONS) -> ScramVerifier:
    salt = os.urandom(16) if salt is None else salt
    stored, server = scram_keys(salted_password(password, salt, iterations))
    return ScramVerifier(iterations, salt, stored, server)


def md5_hash(password: str, user: str) -> str:
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def parse_secret(text: str) -> Secret:
    if text.startswith("plain:"):
        return Secret(plain=text[len("plain:"):])
    if _MD5.fullmatch(text):
        return Secret(md5=text)
    found = _SCRAM.fullmatch(text)
    if found:
        try:
            iterations = int(found.group(1))
            salt, stored, server = (base64.b64decode(found.group(i), validate=True) for i in (2, 3, 4))
        except (binascii.Error, ValueError) as exc:
            raise UsersFileError(f"bad base64 in SCRAM verifier: {exc}") from exc
        if iterations < 1 or len(stored) != 32 or len(server) != 32 or not salt:
            raise UsersFileError("SCRAM verifier has an empty salt, no iterations or keys of the wrong size")
        return Secret(scram=ScramVerifier(iterations, salt, stored, server))
    raise UsersFileError("secret must be 'SCRAM-SHA-256$...', 'md5<32 hex digits>' or 'plain:<password>'")


def parse(text: str, source: str = "users file") -> dict[str, Secret]:
    users: dict[str, Secret] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep or not name:
            raise UsersFileError(f"{source} line {number}: expected name:secret")
        if name in users:
            raise UsersFileError(f"{source} line {number}: user {name!r} appears twice")
        try:
            users[name] = parse_secret(secret)
        except UsersFileError as exc:
            raise UsersFileError(f"{source} line {number} (user {name!r}): {exc}") from None
    return users


def load(path: str) -> dict[str, Secret]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"read users file {path}: {exc}") from exc
    return parse(text, path)
