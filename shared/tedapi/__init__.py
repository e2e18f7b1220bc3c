"""Signed TEDAPI ``v1r`` messages: protobuf envelopes, RSA signatures, their verification.

Heavy on purpose (``protobuf`` and ``cryptography``): import it inside a command's ``run``,
never from a light ``command`` module. The modules, each with one job:

- :mod:`.schema`: the message classes, built at import from a descriptor written in Python;
- :mod:`.signing`: the TLV header, the RSA PKCS#1 v1.5 / SHA-512 signature and its check;
- :mod:`.keys`: generate, store (0600), load and export the RSA key pair;
- :mod:`.commands`: the client side of Max Backup, ``build_request`` and ``parse_response``;
- :mod:`.clients`: the paired keys (list, add by trusted signature, remove), signed the same way;
- :mod:`.responder`: the gateway side (simulator, fakes), ``verify_request`` and the replies;
- :mod:`.cloud`: the JSON bodies that carry the same bytes through the Tesla cloud.

The format as built here is described in ``docs/tedapi.md``.
"""

from powerwall_bus.shared.tedapi.commands import (
    Acknowledged,
    BackupEvents,
    Kind,
    Result,
    build_envelope,
    build_request,
    parse_envelope,
    parse_response,
    sign_request,
)

__all__ = [
    "Acknowledged",
    "BackupEvents",
    "Kind",
    "Result",
    "build_envelope",
    "build_request",
    "parse_envelope",
    "parse_response",
    "sign_request",
]
