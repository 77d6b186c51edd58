"""Signing in to the dashboard: tokens, sessions, and the anti-forgery token of each form.

A person signs in with the admin token (``DATA_DIR/pki/admin.token``: may act) or the
read-only token (``DATA_DIR/pki/viewer.token``, made on first use: may look). The token is
checked once and never stored in the browser: the session cookie holds a random identifier
(HttpOnly, Secure, SameSite=Strict, path ``/ui``), and every form carries the session's own
anti-forgery token. Sessions live in memory for ``SESSION_SECONDS`` from their last use
(a restart signs everyone out); at most ``MAX_SESSIONS`` are kept, the least recently used
forgotten first.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["admin", "viewer"]
COOKIE = "arges_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
VIEWER_TOKEN_FILE = "viewer.token"


def viewer_token(pki_dir: Path) -> str:
    """The read-only token, made (mode 0600) the first time it is asked for."""
    path = pki_dir / VIEWER_TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    pki_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Made meanwhile by another process (``arges ui token``): use that one.
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


@dataclass
class Session:
    """A signed-in browser."""

    role: Role
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Who is signed in (see the module docstring)."""

    def __init__(self, admin_token: str, pki_dir: Path) -> None:
        self.admin_token = admin_token
        self.pki_dir = pki_dir
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def sign_in(self, token: str) -> tuple[str, Session] | None:
        """A new session for ``token``, or None when it is neither token."""
        given = token.strip().encode()
        role: Role | None = None
        if given and hmac.compare_digest(given, self.admin_token.encode()):
            role = "admin"
        elif given and hmac.compare_digest(given, viewer_token(self.pki_dir).encode()):
            role = "viewer"
        if role is None:
            return None
        sid = secrets.token_urlsafe(32)
        session = Session(role)
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session of cookie value ``sid``, if any (its lifetime renewed)."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > SESSION_SECONDS:
            del self._sessions[sid]
            return None
        session.seen = now
        self._sessions.move_to_end(sid)
        return session

    def sign_out(self, sid: str | None) -> None:
        """End a session."""
        if sid:
            self._sessions.pop(sid, None)

    @staticmethod
    def form_ok(session: Session, given: str) -> bool:
        """Whether a form's anti-forgery token is the session's."""
        return hmac.compare_digest(given.encode(), session.csrf.encode())
