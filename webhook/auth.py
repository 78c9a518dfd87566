"""Credentials. Alertmanager presents the shared token on ``POST /alerts``; people and chat-ops
present their own (a users file: operators who decide, viewers who read).

Alertmanager: ``Authorization: Bearer <token>``, or basic auth with any user name and the token
as the password (Alertmanager's ``basic_auth``); compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

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


# -- people: operators and read-only viewers ---------------------------------------------------
#
# A users file, one credential a line: ``NAME ROLE CREDENTIAL``. ROLE is ``operator`` (may decide
# on incidents) or ``viewer`` (reads the page and /api/*). CREDENTIAL is a salted password hash
# (``scrypt$N$r$p$SALT$HASH``, for people who log in to the page) or the SHA-256 of an API token
# (``sha256$HEX``, for chat-ops and scripts: ``Authorization: Bearer <token>``). Only hashes are
# stored; ``canary-guard webhook --add-user/--add-token`` writes the lines.

ROLES = ("operator", "viewer")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class Principal:
    """Who is asking: a name and a role (``alertmanager`` reads only; ``anonymous`` in dev mode)."""

    name: str
    role: str
    via: str  # session | token | password | alertmanager | insecure

    @property
    def may_decide(self) -> bool:
        return self.role == "operator"


class UsersError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    name: str
    role: str
    credential: str


class Users:
    """The users file, read at start (and again when it changes on disk, so rotation needs no restart)."""

    def __init__(self, path: str | None):
        self.path = path
        self._entries: list[_Entry] = []
        self._mtime: float | None = None
        self._lock = threading.Lock()
        if path:
            self._load()

    @property
    def configured(self) -> bool:
        return bool(self.path)

    def _load(self) -> None:
        assert self.path
        try:
            st = os.stat(self.path)
            lines = Path(self.path).read_text().splitlines()
        except OSError as err:
            raise UsersError(f"--users: cannot read {self.path}: {err.strerror}") from None
        entries = []
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                raise UsersError(f"{self.path}:{n}: expected NAME ROLE CREDENTIAL")
            name, role, cred = parts
            if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
                raise UsersError(f"{self.path}:{n}: name: letters, digits, . _ @ - (at most 64)")
            if role not in ROLES:
                raise UsersError(f"{self.path}:{n}: role: must be one of {', '.join(ROLES)}")
            if not (cred.startswith("scrypt$") and cred.count("$") == 5) and not re.fullmatch(
                    r"sha256\$[0-9a-f]{64}", cred):
                raise UsersError(f"{self.path}:{n}: credential: must be scrypt$... or sha256$<hex> "
                                 "(write lines with --add-user / --add-token; never a plain password)")
            entries.append(_Entry(name, role, cred))
        self._entries, self._mtime = entries, st.st_mtime

    def _fresh(self) -> list[_Entry]:
        if not self.path:
            return []
        with self._lock:
            try:
                if os.stat(self.path).st_mtime != self._mtime:
                    self._load()
            except (OSError, UsersError):
                pass  # keep the last good file; the next request tries again
            return self._entries

    def password(self, name: str, password: str) -> Principal | None:
        for e in self._fresh():
            if e.name == name and e.credential.startswith("scrypt$"):
                _, n, r, p, salt, digest = e.credential.split("$")
                got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                     p=int(p), dklen=len(base64.b64decode(digest)))
                if hmac.compare_digest(got, base64.b64decode(digest)):
                    return Principal(e.name, e.role, "password")
        return None

    def token(self, token: str) -> Principal | None:
        want = hash_token(token)
        found = None
        for e in self._fresh():  # compare against every entry: no early exit to time
            if hmac.compare_digest(e.credential, want):
                found = Principal(e.name, e.role, "token")
        return found

    def add(self, name: str, role: str, credential: str) -> None:
        """Append a line (used by the CLI); the file is created with mode 0600."""
        assert self.path
        if role not in ROLES:
            raise UsersError(f"--role: must be one of {', '.join(ROLES)}")
        if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
            raise UsersError("name: letters, digits, . _ @ - (at most 64)")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{name} {role} {credential}\n")


class Access:
    """Who may read and who may decide: operators and viewers from the users file, Alertmanager's
    token (read-only: it can already make the webhook act, reading the audit trail adds nothing),
    and, with --insecure-no-auth, anyone (development only)."""

    def __init__(self, users: Users, alertmanager: AlertmanagerAuth, insecure: bool):
        self.users, self.alertmanager, self.insecure = users, alertmanager, insecure

    def from_header(self, header: str | None) -> Principal | None:
        if not header:
            return None
        scheme, _, cred = header.partition(" ")
        cred = cred.strip()
        if scheme.lower() == "bearer" and cred:
            p = self.users.token(cred)
            if p:
                return p
            if self.alertmanager.enabled and self.alertmanager.check(header):
                return Principal("alertmanager", "viewer", "alertmanager")
        elif scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return None
            p = self.users.password(user, password)
            if p:
                return p
            if self.alertmanager.enabled and self.alertmanager.check(header):
                return Principal("alertmanager", "viewer", "alertmanager")
        return None

    def anonymous(self) -> Principal | None:
        return Principal("anonymous", "operator", "insecure") if self.insecure else None


def csrf_token() -> str:
    return secrets.token_urlsafe(32)
