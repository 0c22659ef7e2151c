"""Web sessions kept in the database. The browser holds a random 256-bit token; the table holds
only its SHA-256, so a copy of the table gives no usable cookie. A session is alive until it is
revoked (logout), has been idle too long, or reaches its absolute end; a session that is not
alive is refused and stays refused: the check and the renewal are one statement."""

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.fhir.dates import utc_now
from bilan.settings import Settings
from bilan.storage.tables import web_sessions

TOKEN_BYTES = 32


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WebSessions:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.lifetime = timedelta(seconds=settings.session_max_age)
        self.idle = timedelta(seconds=settings.session_idle)

    def _alive(self, token: str) -> ColumnElement[bool]:
        now = utc_now()
        table = web_sessions.c
        return (table.id == _digest(token)) & ~table.revoked & (table.expires_at > now) & \
            (table.last_seen_at > now - self.idle)

    async def open(self, data: dict[str, Any]) -> str:
        """A new session holding `data`; its token, which only the caller ever sees."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = utc_now()
        async with self.engine.begin() as conn:
            # Ended sessions go when new ones come: the table holds about a lifetime's logins.
            await conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
            await conn.execute(insert(web_sessions).values(
                id=_digest(token), data=data, created_at=now, last_seen_at=now,
                expires_at=now + self.lifetime, revoked=False))
        return token

    async def resume(self, token: str) -> dict[str, Any] | None:
        """The session's data, marking it seen now; None if it is not alive."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                update(web_sessions).where(self._alive(token)).values(last_seen_at=utc_now())
                .returning(web_sessions.c.data))).first()
        return None if row is None else row.data

    async def save(self, token: str, data: dict[str, Any]) -> bool:
        """Replace the data of a session still alive; False if it is not."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(web_sessions).where(self._alive(token)).values(data=data, last_seen_at=utc_now()))
        return result.rowcount == 1

    async def revoke(self, token: str) -> None:
        """End the session for good: its token is refused from now on."""
        async with self.engine.begin() as conn:
            await conn.execute(update(web_sessions).where(web_sessions.c.id == _digest(token))
                               .values(revoked=True))
