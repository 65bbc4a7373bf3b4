"""Operator actions on accounts, each recorded in the audit log."""

from __future__ import annotations

import json

from ..extensions import db
from ..models import AuditLog, User


def audit(actor: User | None, action: str, target: str | None, before=None, after=None) -> AuditLog:
    """Add an audit row to the session (the caller commits with the change it records)."""
    entry = AuditLog(
        actor_id=actor.id if actor else None,
        action=action,
        target=target,
        before=None if before is None else json.dumps(before, default=str, sort_keys=True),
        after=None if after is None else json.dumps(after, default=str, sort_keys=True),
    )
    db.session.add(entry)
    return entry


def set_active(user: User, active: bool, actor: User | None) -> None:
    """Enable or disable an account; commits with its audit row."""
    before = user.active
    user.active = active
    audit(
        actor,
        "user.enable" if active else "user.disable",
        f"user:{user.id}",
        {"active": before},
        {"active": active},
    )
    db.session.commit()
