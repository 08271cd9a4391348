"""Which method a login uses and the messages of that method; no I/O.

    exchange = start(policy, user)
    out = exchange.first()              # send; b"" when nothing is asked (trust)
    while not exchange.done:
        out = exchange.step(body)       # body: the client's PasswordMessage ('p'); send out

`step` raises AuthFailed (28P01) for a wrong password or unknown user and
codec.ProtocolError (08P01) for a malformed message. After `done`, the caller sends
AuthenticationOk.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from sqld.edge.auth import AuthFailed, scram, userfile
from sqld.edge.auth.userfile import Secret
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m

TRUST = "trust"
PASSWORD = "password"          # cleartext; use it only over TLS
MD5 = "md5"
SCRAM = "scram-sha-256"
METHODS = (TRUST, PASSWORD, MD5, SCRAM)


class AuthConfigError(ValueError):
    """The authentication settings cannot work (unknown method, no users for a password method)."""


@dataclass(frozen=True)
class Policy:
    method: str
    users: dict[str, Secret] = field(default_factory=dict)
    mock_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))


def policy(method: str, users_path: str) -> Policy:
    """The edge's policy from its config: trust without users, SCRAM-SHA-256 with them, unless set."""
    users = userfile.load(users_path) if users_path else {}
    chosen = method.strip().lower() or (SCRAM if users else TRUST)
    if chosen not in METHODS:
        raise AuthConfigError(f"unknown auth method {method!r}: choose one of {', '.join(METHODS)}")
    if chosen != TRUST and not users:
        raise AuthConfigError(f"auth method {chosen} needs users: give a users file with --users")
    return Policy(chosen, users)


class Exchange:
    def __init__(self, policy: Policy, user: str) -> None:
        self.policy = policy
        self.user = user
        self.secret = policy.users.get(user)
        self.method = policy.method
        if self.method == MD5 and self.secret is not None and self.secret.scram is not None:
            self.method = SCRAM  # MD5 cannot be checked against a SCRAM verifier; PostgreSQL does the same
        self.done = False
        self._salt = b""
        self._scram: scram.ScramServer | None = None

    def first(self) -> bytes:
        if self.method == TRUST:
            self.done = True
            return b""
        if self.method == PASSWORD:
            return m.AUTH_CLEARTEXT_PASSWORD
        if self.method == MD5:
            self._salt = secrets.token_bytes(4)
            return m.auth_md5_password(self._salt)
        self._scram = self._scram_server()
        return m.auth_sasl([scram.MECHANISM])

    def step(self, body: bytes) -> bytes:
        if self.done:
            raise codec.ProtocolError("unexpected password message: authentication is complete")
        if self.method in (PASSWORD, MD5):
            self.done = True
            answer = codec.parse_password(body)
            if not answer:
                raise AuthFailed(self.user, "empty password")
            if self.method == PASSWORD:
                self._check_cleartext(answer)
            else:
                self._check_md5(answer)
            return b""
        assert self._scram is not None
        if self._scram.state == scram.EXPECT_CLIENT_FIRST:
            mechanism, data = codec.parse_sasl_initial(body)
            if mechanism != scram.MECHANISM:
                raise codec.ProtocolError(f"client selected an invalid SASL authentication mechanism {mechanism!r}")
            return m.auth_sasl_continue(self._scram.server_first(data))
        final = self._scram.server_final(body)
        self.done = True
        return m.auth_sasl_final(final)

    # -- per method ----------------------------------------------------------------------
    def _scram_server(self) -> scram.ScramServer:
        s = self.secret
        if s is None:
            return scram.ScramServer(self.user, scram.mock_verifier(self.user, self.policy.mock_key), "no such user")
        if s.scram is not None:
            return scram.ScramServer(self.user, s.scram)
        if s.plain is not None:
            return scram.ScramServer(self.user, userfile.scram_verifier(s.plain, self._plain_salt()))
        return scram.ScramServer(self.user, scram.mock_verifier(self.user, self.policy.mock_key),
                                 "the user has an MD5 password, which cannot do SCRAM-SHA-256")

    def _plain_salt(self) -> bytes:
        """A plain password gets a stable salt per user, so repeated logins see the same one."""
        return hmac.new(self.policy.mock_key, b"plain:" + self.user.encode(), hashlib.sha256).digest()[:16]

    def _check_cleartext(self, password: str) -> None:
        s = self.secret
        if s is None:
            raise AuthFailed(self.user, "no such user")
        if s.plain is not None:
            ok = hmac.compare_digest(password.encode(), s.plain.encode())
        elif s.md5 is not None:
            ok = hmac.compare_digest(userfile.md5_hash(password, self.user), s.md5)
        else:
            assert s.scram is not None
            v = s.scram
            stored, _ = userfile.scram_keys(userfile.salted_password(password, v.salt, v.iterations))
            ok = hmac.compare_digest(stored, v.stored_key)
        if not ok:
            raise AuthFailed(self.user, "wrong password")

    def _check_md5(self, answer: str) -> None:
        s = self.secret
        if s is None:
            raise AuthFailed(self.user, "no such user")
        stored = s.md5 if s.md5 is not None else userfile.md5_hash(s.plain or "", self.user)
        expected = "md5" + hashlib.md5(stored[3:].encode() + self._salt).hexdigest()
        if not hmac.compare_digest(answer.encode(), expected.encode()):
            raise AuthFailed(self.user, "wrong password")


def start(policy: Policy, user: str) -> Exchange:
    return Exchange(policy, user)
