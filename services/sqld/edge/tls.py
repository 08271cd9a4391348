"""The edge's TLS server context, built once from --tls-cert and --tls-key."""
from __future__ import annotations

import ssl

from sqld.edge.config import Config


class TLSConfigError(ValueError):
    """The TLS settings cannot work (half given, unreadable files, key not matching the certificate)."""


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """None when TLS is off; then SSLRequest is answered 'N'."""
    if not cfg.tls_cert and not cfg.tls_key:
        if cfg.tls_required:
            raise TLSConfigError("--tls-required needs --tls-cert and --tls-key")
        return None
    if not (cfg.tls_cert and cfg.tls_key):
        raise TLSConfigError("TLS needs both --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"load TLS certificate {cfg.tls_cert} / key {cfg.tls_key}: {exc}") from exc
    return ctx
