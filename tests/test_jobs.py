"""The shared background pattern: guarded claims, periodic jobs, backoff."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation, ActivationStatus, utcnow
from reseller.services import jobs


def _activation(user, upstream_id: str) -> Activation:
    now = utcnow()
    row = Activation(
        user_id=user.id,
        service="tg",
        country_id=12,
        price=1000,
        upstream_name="sandbox",
        status=ActivationStatus.ALLOCATED.value,
        upstream_id=upstream_id,
        phone="15550000000",
        created_at=now,
        expires_at=now + dt.timedelta(minutes=20),
    )
    db.session.add(row)
    db.session.commit()
    return row


def test_a_claimed_row_is_not_claimed_again_until_released(app, make_user):
    user = make_user(balance="5")
    first, second = _activation(user, "1"), _activation(user, "2")
    stmt = select(Activation.id).order_by(Activation.id)

    assert jobs.claim_rows(Activation, stmt, claim_seconds=60) == [first.id, second.id]
    assert jobs.claim_rows(Activation, stmt, claim_seconds=60) == []

    jobs.release(Activation, first.id)
    assert jobs.claim_rows(Activation, stmt, claim_seconds=60) == [first.id]


def test_an_expired_claim_can_be_taken_again(app, make_user, clock):
    user = make_user(balance="5")
    row = _activation(user, "1")
    stmt = select(Activation.id)
    assert jobs.claim_rows(Activation, stmt, claim_seconds=30) == [row.id]
    clock.travel(31)
    assert jobs.claim_rows(Activation, stmt, claim_seconds=30) == [row.id]


def test_a_periodic_job_runs_once_per_interval(app, clock):
    assert jobs.claim_job("demo", every=60)
    assert not jobs.claim_job("demo", every=60)  # held
    jobs.finish_job("demo", value="x")
    assert not jobs.claim_job("demo", every=60)  # ran just now
    clock.travel(61)
    assert jobs.claim_job("demo", every=60)


@pytest.mark.parametrize(("attempt", "expected"), [(1, 10.0), (2, 100.0), (3, 1000.0), (9, 1000.0)])
def test_backoff_grows_from_first_to_last(attempt, expected):
    assert jobs.backoff_seconds(attempt, first=10, last=1000, steps=3) == pytest.approx(expected)
