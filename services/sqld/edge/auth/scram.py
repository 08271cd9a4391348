"""SCRAM-SHA-256 server side (RFC 5802, RFC 7677), without channel binding; no I/O.

    client-first  n,,n=<ignored>,r=<client nonce>
    server-first  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
    client-final  c=<base64 of gs2 header>,r=<full nonce>,p=<ClientProof>
    server-final  v=<ServerSignature>

The user name inside client-first differs by client (empty, `*`, the real name): the
startup packet's user is the one authenticated, as PostgreSQL does. A malformed message is
a protocol error (08P01); a wrong proof is AuthFailed (28P01).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from sqld.edge.auth import AuthFailed
from sqld.edge.auth.userfile import ScramVerifier
from sqld.edge.pgwire.codec import ProtocolError

MECHANISM = "SCRAM-SHA-256"

# states of one exchange
EXPECT_CLIENT_FIRST = "expect-client-first"
EXPECT_CLIENT_FINAL = "expect-client-final"
FINISHED = "finished"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _printable_nonce(value: str) -> bool:
    return bool(value) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in value)


class ScramServer:
    """One SCRAM-SHA-256 exchange for `user`. `fail_reason` set = a mock exchange that always fails.

    A mock exchange (unknown user, or a user whose secret cannot do SCRAM) looks the same on
    the wire as a real one, so its outcome only shows at the end.
    """

    def __init__(self, user: str, verifier: ScramVerifier, fail_reason: str = "",
                 server_nonce: str = "") -> None:
        self.user = user
        self._server_nonce = server_nonce or _b64(secrets.token_bytes(18))  # tests pass RFC vectors
        self.verifier = verifier
        self.fail_reason = fail_reason
        self.state = EXPECT_CLIENT_FIRST
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def server_first(self, client_first: bytes) -> bytes:
        if self.state != EXPECT_CLIENT_FIRST:
            raise ProtocolError(f"unexpected SCRAM client-first message in state {self.state}")
        text = _decode(client_first)
        flag, sep, rest = text.partition(",")
        if flag == "p" or flag.startswith("p="):
            raise ProtocolError("client requires SCRAM channel binding, which this server does not offer")
        if flag not in ("n", "y") or not sep:
            raise ProtocolError("malformed SCRAM message: bad GS2 channel-binding flag")
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise ProtocolError("malformed SCRAM message: incomplete GS2 header")
        if authzid:
            raise ProtocolError("SCRAM authorization identity (a=) is not supported")
        attrs = bare.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise ProtocolError("malformed SCRAM message: expected n=<user>,r=<nonce>")
        client_nonce = attrs[1][2:]
        if not all(_is_attr(a) for a in attrs[2:]):
            raise ProtocolError("malformed SCRAM message: invalid attribute")
        if not _printable_nonce(client_nonce):
            raise ProtocolError("malformed SCRAM message: invalid client nonce")
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        v = self.verifier
        self._server_first = f"r={self._nonce},s={_b64(v.salt)},i={v.iterations}"
        self.state = EXPECT_CLIENT_FINAL
        return self._server_first.encode()

    def server_final(self, client_final: bytes) -> bytes:
        if self.state != EXPECT_CLIENT_FINAL:
            raise ProtocolError(f"unexpected SCRAM client-final message in state {self.state}")
        self.state = FINISHED
        text = _decode(client_final)
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise ProtocolError("malformed SCRAM message: no proof (p=)")
        attrs = without_proof.split(",")
        if (len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r=")
                or not all(_is_attr(a) for a in attrs[2:])):
            raise ProtocolError("malformed SCRAM message: expected c=<binding>,r=<nonce>")
        try:
            binding = base64.b64decode(attrs[0][2:], validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except binascii.Error as exc:
            raise ProtocolError("malformed SCRAM message: invalid base64") from exc
        if binding != self._gs2_header.encode():
            raise ProtocolError("SCRAM channel binding check failed")
        if attrs[1][2:] != self._nonce:
            raise ProtocolError("SCRAM nonce mismatch")
        if len(proof) != hashlib.sha256().digest_size:
            raise ProtocolError("malformed SCRAM message: proof of the wrong size")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        v = self.verifier
        signature = hmac.new(v.stored_key, auth_message, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if self.fail_reason:
            raise AuthFailed(self.user, self.fail_reason)
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), v.stored_key):
            raise AuthFailed(self.user, "wrong password (SCRAM proof did not match)")
        server_signature = hmac.new(v.server_key, auth_message, hashlib.sha256).digest()
        return f"v={_b64(server_signature)}".encode()


def mock_verifier(user: str, key: bytes) -> ScramVerifier:
    """A stable fake verifier for a user who cannot log in: the same salt every time, as a real one has."""
    salt = hmac.new(key, user.encode(), hashlib.sha256).digest()[:16]
    return ScramVerifier(4096, salt, secrets.token_bytes(32), secrets.token_bytes(32))


def _is_attr(text: str) -> bool:
    return len(text) >= 2 and text[0].isascii() and text[0].isalpha() and text[1] == "="


def _decode(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("malformed SCRAM message: invalid UTF-8") from exc
