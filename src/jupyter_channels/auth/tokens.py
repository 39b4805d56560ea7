"""Tokens: how a request presents one, comparing them, and the service's tokens file.

The tokens file maps each token to an identity::

    {"TOKEN": {"username": "alice", "name": "Alice Liddell", "groups": ["teachers"]}}

(``name`` and ``groups`` optional). A request carries its token as
``Authorization: token T``, ``Authorization: Bearer T`` or ``?token=T``. Tokens
are compared in constant time and never logged; the file is read again when it
changes, and the identities of removed tokens are reported so that their
connections can be closed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def mint_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(presented: str | None, token: str | None) -> bool:
    """Constant-time comparison; an empty token never matches."""
    if not presented or not token:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


def presented_token(headers: Any, query_token: str | None) -> str | None:
    """The token a request carries: ``Authorization: token X`` (or ``Bearer X``), or ``?token=``."""
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return str(value.strip())
    return query_token or None


def initials_of(name: str) -> str:
    """``"Alice Liddell"`` -> ``"AL"``: the first letters of the first two words, as
    Jupyter makes initials for the users it names."""
    letters = [word[0] for word in name.split()[:2] if word]
    return "".join(letters).upper() or "?"


@dataclass(frozen=True)
class TokenUser:
    """An identity given by a token: the shape of Jupyter's ``User``, plus groups."""

    username: str
    name: str
    display_name: str
    initials: str | None
    color: str | None = None
    groups: tuple[str, ...] = ()
    admin: bool = False
    #: Which token this identity came from (a digest, never the token): revocation.
    token_id: str = field(default="", repr=False)


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def parse_tokens(text: str, source: str) -> dict[str, TokenUser]:
    """The tokens of a tokens file's text; ``ValueError`` naming what is wrong (never a token)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{source}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be an object mapping each token to an identity")
    users: dict[str, TokenUser] = {}
    for n, (token, entry) in enumerate(data.items(), 1):
        where = f"{source}: entry {n}"
        if not isinstance(token, str) or len(token) < 16:
            raise ValueError(f"{where}: a token must be a string of at least 16 characters")
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str):
            raise ValueError(
                f'{where}: must be {{"username": ..., "name"?: ..., "groups"?: [...]}}'
            )
        username = entry["username"].strip()
        name = entry.get("name") or username
        groups = entry.get("groups", [])
        if not username or not isinstance(name, str):
            raise ValueError(f"{where}: 'username' and 'name' must be non-empty strings")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{where}: 'groups' must be a list of strings")
        users[token] = TokenUser(
            username=username,
            name=name,
            display_name=name,
            initials=initials_of(name),
            groups=tuple(groups),
            admin=bool(entry.get("admin", False)),
            token_id=token_id(token),
        )
    return users


class TokensFile:
    """The service's tokens file, read again whenever it changes on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, TokenUser] = {}
        self.reload()

    def _read_stamp(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size

    def reload(self) -> set[str]:
        """Read the file; returns the ids of the tokens it no longer holds.

        Raises ``ValueError`` / ``OSError`` on the first read; later a broken file is
        logged and the tokens read before stay in force.
        """
        stamp = self._read_stamp()
        users = parse_tokens(self.path.read_text(), str(self.path))
        before = {user.token_id for user in self._users.values()}
        self._users, self._stamp = users, stamp
        return before - {user.token_id for user in users.values()}

    def reload_if_changed(self) -> set[str]:
        """Read the file again if it changed; the ids of removed tokens (empty otherwise)."""
        try:
            if self._read_stamp() == self._stamp:
                return set()
            removed = self.reload()
        except (OSError, ValueError) as e:
            log.error("tokens file not reloaded, the tokens read before stay in force: %s", e)
            return set()
        log.info("tokens file reloaded: %d tokens, %d removed", len(self._users), len(removed))
        return removed

    def identify(self, presented: str | None) -> TokenUser | None:
        """The identity of a presented token, or ``None``. Every token is compared, in
        constant time, so the time taken says nothing about which came close."""
        found = None
        for token, user in self._users.items():
            if token_matches(presented, token):
                found = user
        return found
