"""The audit log: who did what to which account or setting (never a secret)."""

from __future__ import annotations

import json

from ..extensions import db
from ..models import AuditLog, User


def audit(actor: User | None, action: str, target: str | None, before=None, after=None) -> AuditLog:
    """Add an audit row to the session (the caller commits with the change it records).
    `actor` is the person who acted (None: the command line)."""
    entry = AuditLog(
        actor_id=actor.id if actor else None,
        action=action,
        target=target,
        before=None if before is None else json.dumps(before, default=str, sort_keys=True),
        after=None if after is None else json.dumps(after, default=str, sort_keys=True),
    )
    db.session.add(entry)
    return entry
