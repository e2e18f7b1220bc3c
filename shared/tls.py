"""TLS client contexts (standard library only, so light commands can use them)."""

from __future__ import annotations

import ssl


def unverified_client_context() -> ssl.SSLContext:
    """A client context that accepts any certificate and host name.

    For the gateway's self-signed certificate (pinned separately when the user asks for it,
    see ``gateway.tls_fingerprint``) and our own simulator's, made at start. Never for a
    server whose identity matters and is not pinned.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
