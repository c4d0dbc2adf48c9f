"""The secrets feature's tables: single-use links, and values waiting for approval.

Neither holds a secret in the clear. A link stores the SHA-256 of its token (the token
itself is only in the link the person was sent) and of the current page's CSRF token;
a pending value is Vault transit ciphertext, deleted once written, rejected, expired or
given up.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, new_id, utcnow


class SecretLinkRow(Base):
    """One `secret set`: who may set which key, until when; used once."""

    __tablename__ = "secret_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(40))
    service: Mapped[str] = mapped_column(String(80))
    environment: Mapped[str] = mapped_column(String(80))
    team: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    csrf_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the CSRF token of the page last served for this link."""
    used_at: Mapped[datetime | None]
    run_id: Mapped[str | None] = mapped_column(String(32))


class PendingSecretRow(Base):
    """A value received and waiting for its Run (and maybe its approval), encrypted."""

    __tablename__ = "secret_pending"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    link_id: Mapped[str] = mapped_column(String(32), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    length: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    discard_at: Mapped[datetime]
    """Deleted then whatever happened (a failed Run not retried in time, say)."""
