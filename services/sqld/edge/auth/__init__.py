"""Client authentication for the edge: the users file, SCRAM-SHA-256, MD5 and cleartext.

No I/O here: `exchange.start(policy, user)` gives an Exchange that turns the client's
PasswordMessage bodies into the server's Authentication messages; edge/handshake.py
drives it over the socket.
"""


class AuthFailed(Exception):
    """The client did not prove who it is: FATAL 28P01 with one message for every reason.

    `reason` (wrong password, no such user, ...) goes to the edge's log only, so a client
    cannot learn which user names exist.
    """

    def __init__(self, user: str, reason: str) -> None:
        super().__init__(f'password authentication failed for user "{user}"')
        self.user = user
        self.reason = reason
