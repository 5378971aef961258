"""Signed-in sessions and sign-ins under way, kept server-side in the app's memory.

Why memory and not a signed cookie or the store: sign-out and the idle timeout must end a session on the
server (a signed cookie stays valid until it expires, whoever copied it), and the app is one process
with one worker thread for the store, so a dictionary is the whole server side. A restart signs
everyone out, which fails safe; no session id is ever written to disk or to the state backup. The
cookie holds only a random id (256 bits).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

PENDING_SECONDS = 600
"""A sign-in started must come back within ten minutes (the identity provider's code lives as long)."""
MAX_PENDING = 10_000


W = TypeVar("W")
"""Who signed in (`signin.SignedIn`, which imports this module)."""


@dataclass
class Session(Generic[W]):
    session_id: str
    who: W
    started: float
    seen: float
    csrf: str
    """The sign-out form's token: a POST without it is not from our page."""
    choices: dict[str, str] = field(default_factory=dict)
    """Opaque references this session was shown (the request form's person search) -> what each stands for;
    they end with the session, and a reference another session was shown means nothing here."""


@dataclass(frozen=True)
class Pending:
    """A sign-in sent to the identity provider: msal's flow (state, nonce, PKCE verifier) and where to go after."""

    flow: dict[str, Any]
    next_path: str
    started: float


class Sessions(Generic[W]):
    """Every signed-in session and sign-in under way. Used from the event loop and threads: locked."""

    def __init__(self, lifetime: float, idle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.clock = clock
        self._sessions: dict[str, Session[W]] = {}
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()

    def start(self, who: W, replacing: str | None = None) -> Session[W]:
        """A new session with a new id (never the one the browser came with: session fixation)."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), who, now, now, secrets.token_urlsafe(32))
        with self._lock:
            if replacing:
                self._sessions.pop(replacing, None)
            self._forget_old(now)
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session[W] | None:
        """The live session of this id (its idle clock restarted), or None when unknown, too old or idle."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.started >= self.lifetime or now - session.seen >= self.idle:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def end(self, session_id: str | None) -> bool:
        with self._lock:
            return self._sessions.pop(session_id or "", None) is not None

    def pend(self, flow: dict[str, Any], next_path: str) -> str:
        """Remember a sign-in sent to the identity provider; the key goes in the browser's cookie."""
        key = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            if len(self._pending) >= MAX_PENDING:  # a flood of sign-ins started cannot grow memory
                oldest = min(self._pending, key=lambda k: self._pending[k].started)
                del self._pending[oldest]
            self._pending[key] = Pending(flow, next_path, now)
        return key

    def take(self, key: str | None) -> Pending | None:
        """The sign-in under way for this key, once: a replayed answer finds nothing."""
        with self._lock:
            pending = self._pending.pop(key or "", None)
        if pending is None or self.clock() - pending.started >= PENDING_SECONDS:
            return None
        return pending

    def _forget_old(self, now: float) -> None:
        for key in [k for k, p in self._pending.items() if now - p.started >= PENDING_SECONDS]:
            del self._pending[key]
        for key in [k for k, s in self._sessions.items()
                    if now - s.started >= self.lifetime or now - s.seen >= self.idle]:
            del self._sessions[key]
