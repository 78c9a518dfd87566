"""Credentials. Alertmanager presents the shared token on ``POST /alerts``.

``Authorization: Bearer <token>``, or basic auth with any user name and the token as the
password (Alertmanager's ``basic_auth``); compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac

CHALLENGE = 'Bearer realm="canary-guard", Basic realm="canary-guard"'
UNAUTHORIZED_DETAIL = ("missing or wrong credentials: send 'Authorization: Bearer <token>' "
                       "(or basic auth with the token as password)")


class AlertmanagerAuth:
    """Checks the credential of a notification; ``None`` token: authentication disabled."""

    def __init__(self, token: str | None):
        self._expected = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def check(self, header: str | None) -> bool:
        """True when the ``Authorization`` header carries the token (or auth is disabled)."""
        if self._expected is None:
            return True
        given = presented_secret(header)
        return given is not None and hmac.compare_digest(given, self._expected)


def presented_secret(header: str | None) -> bytes | None:
    """The secret in a Bearer or Basic (password) ``Authorization`` header, or None."""
    if not header:
        return None
    scheme, _, cred = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return cred.strip().encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(cred.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]  # any user; the password is the token
    return None
