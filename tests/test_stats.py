"""The overview figures, from a known set of activations, state changes and ledger rows."""

from __future__ import annotations

import datetime as dt

import pytest

from reseller.admin.chart import money_chart
from reseller.extensions import db
from reseller.models import Activation, ActivationEvent, LedgerKind
from reseller.models import ActivationStatus as S
from reseller.money import parse_amount
from reseller.services import stats, wallet
from reseller.services.ledger import verify_ledger

NOW = dt.datetime(2030, 6, 15, 12, 0)
TODAY = NOW.date()


def units(text: str) -> int:
    return parse_amount(text, allow_negative=True)


def at(clock, when: dt.datetime) -> None:
    """Set the app's clock to `when` (rows take their timestamps from it)."""
    clock.reset()
    clock.travel((when - clock.utcnow()).total_seconds())


def ago(days: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days), dt.time(hour, minute))


class Story:
    """Writes activations the way the lifecycle does: a charge and an event per change,
    a refund with every refunding change; each at the time it happens."""

    def __init__(self, clock, user):
        self.clock, self.user = clock, user

    def buy(self, when, service="tg", country_id=187, price="1.69", cost="1.30") -> int:
        at(self.clock, when)
        activation = Activation(
            user_id=self.user.id,
            service=service,
            country_id=country_id,
            status=S.ALLOCATED.value,
            price=units(price),
            upstream_cost=None if cost is None else units(cost),
            upstream_name="sandbox",
            upstream_id=str(when.timestamp()),
        )
        db.session.add(activation)
        db.session.flush()
        wallet.debit(self.user.id, units(price), activation_id=activation.id)
        self._event(activation.id, None, S.PENDING)
        self._event(activation.id, S.PENDING, S.ALLOCATED)
        db.session.commit()
        return activation.id

    def move(self, activation_id: int, when, target: S) -> None:
        at(self.clock, when)
        activation = db.session.get(Activation, activation_id)
        source = S(activation.status)
        activation.status = target.value
        self._event(activation_id, source, target)
        if target in (S.CANCELLED, S.EXPIRED, S.FAILED):
            wallet.credit(
                self.user.id, activation.price, kind=LedgerKind.REFUND, activation_id=activation_id
            )
        db.session.commit()

    def _event(self, activation_id, source, target):
        db.session.add(
            ActivationEvent(
                activation_id=activation_id,
                from_status=source.value if source else None,
                to_status=target.value,
                actor="test",
            )
        )


@pytest.fixture
def story(clock, make_user):
    customer = make_user(email="buyer@example.com", balance="100.00")
    return Story(clock, customer)


@pytest.fixture
def known(story, clock):
    """The known set; see each line for what it counts as."""
    # Today: a code (then completed), a cancel, a code without a known cost, one waiting.
    a1 = story.buy(ago(0, 10, 0))
    story.move(a1, ago(0, 10, 1), S.CODE_RECEIVED)
    story.move(a1, ago(0, 10, 5), S.COMPLETED)
    a2 = story.buy(ago(0, 11, 0))
    story.move(a2, ago(0, 11, 3), S.CANCELLED)
    a8 = story.buy(ago(0, 9, 0), service="wa", price="1.89", cost=None)
    story.move(a8, ago(0, 9, 2), S.CODE_RECEIVED)
    story.buy(ago(0, 11, 30), service="go", country_id=0, price="0.16", cost="0.12")
    # 3 days ago: an expiry; a purchase before midnight whose code came after it.
    a3 = story.buy(ago(3, 8, 0), service="wa", price="1.89", cost="1.45")
    story.move(a3, ago(3, 8, 20), S.EXPIRED)
    a4 = story.buy(ago(3, 23, 55), service="go", country_id=0, price="0.16", cost="0.12")
    story.move(a4, ago(2, 0, 1), S.CODE_RECEIVED)
    # 10 days ago: a failed purchase (charged and refunded within the minute).
    a5 = story.buy(ago(10), price="1.69")
    story.move(a5, ago(10, 10, 1), S.FAILED)
    # First code just before the 30-day window, a retry's second code inside it: the
    # activation's outcome is before the window, so it does not count in it.
    a7 = story.buy(ago(30, 23, 50), service="ds", country_id=12, price="0.08", cost="0.06")
    story.move(a7, ago(30, 23, 58), S.CODE_RECEIVED)
    story.move(a7, ago(30, 23, 59), S.RETRY_WAIT)
    story.move(a7, ago(29, 0, 3), S.CODE_RECEIVED)
    # 40 days ago: out of every period.
    a6 = story.buy(ago(40))
    story.move(a6, ago(40, 10, 1), S.CODE_RECEIVED)
    # Top-ups and adjustments are not revenue.
    at(clock, ago(0, 8))
    wallet.adjust(story.user.id, units("50.00"), note="wire")
    wallet.adjust(story.user.id, units("-5.00"), note="correction")
    clock.reset()


def test_outcomes_money_and_rates_per_period(known):
    assert verify_ledger() == []  # the story's books balance like real ones
    data = stats.overview(now=NOW)
    today, week, month = data.periods["today"], data.periods["7d"], data.periods["30d"]

    assert today.outcomes == {"code": 2, "cancelled": 1, "expired": 0, "failed": 0}
    assert today.charged == units("1.69") * 2 + units("1.89") + units("0.16")
    assert today.refunds == units("1.69")
    assert today.revenue == units("1.69") + units("1.89") + units("0.16")
    assert today.cost == units("1.30")  # the code without a known cost is not guessed
    assert today.cost_unknown == 1
    assert today.profit == today.revenue - units("1.30")
    assert today.success_rate == pytest.approx(2 / 3)

    assert week.outcomes == {"code": 3, "cancelled": 1, "expired": 1, "failed": 0}
    assert week.charged == today.charged + units("1.89") + units("0.16")
    assert week.refunds == today.refunds + units("1.89")
    assert week.cost == units("1.30") + units("0.12")
    assert week.success_rate == pytest.approx(3 / 5)

    assert month.outcomes == {"code": 3, "cancelled": 1, "expired": 1, "failed": 1}
    assert month.charged == week.charged + units("1.69")
    assert month.refunds == week.refunds + units("1.69")
    assert month.revenue == week.revenue
    assert month.cost == week.cost
    assert month.success_rate == pytest.approx(3 / 5)  # failed purchases handed out nothing


def test_money_is_dated_by_the_ledger_and_cost_by_the_first_code(known):
    data = stats.overview(now=NOW)
    three, two = data.daily[TODAY - dt.timedelta(days=3)], data.daily[TODAY - dt.timedelta(2)]
    assert (three.charged, three.refunds, three.cost) == (
        units("1.89") + units("0.16"),
        units("1.89"),
        0,
    )
    assert (two.charged, two.cost, two.outcomes["code"]) == (0, units("0.12"), 1)
    assert len(data.days) == 30 and data.days[-1] == TODAY
    assert sum(data.daily[d].revenue for d in data.days) == data.periods["30d"].revenue


def test_top_services_and_countries(known):
    data = stats.overview(now=NOW)
    services = [(r.key, r.codes, r.revenue, r.cost) for r in data.top_services["today"]]
    assert services == [
        ("wa", 1, units("1.89"), 0),
        ("tg", 1, units("1.69"), units("1.30")),  # two bought, one refunded
        ("go", 0, units("0.16"), 0),
    ]
    countries = {r.key: (r.codes, r.revenue) for r in data.top_countries["7d"]}
    assert countries == {187: (2, units("3.58")), 0: (1, units("0.32"))}
    best = data.top_services["30d"][0]  # wa: 1.89 kept; its expired number cost nothing
    assert (best.key, best.revenue, best.profit) == ("wa", units("1.89"), units("1.89"))


def test_nothing_yet(app):
    data = stats.overview(now=NOW)
    assert data.periods["30d"].success_rate is None
    assert data.top_services["30d"] == []
    chart = money_chart(data.days, data.daily)
    assert len(chart.rows) == 30 and chart.y_ticks


def test_the_chart_draws_every_day_and_goes_below_zero(known):
    data = stats.overview(now=NOW)
    chart = money_chart(data.days, data.daily)
    assert [len(s.points.split()) for s in chart.series] == [30, 30, 30]
    labels = [label for _y, label in chart.y_ticks]
    # Day -2 has a cost and no revenue: a loss, so the axis reaches below zero.
    assert labels[0].startswith("-") and "0.00" in labels
    assert chart.rows[-1] == (
        TODAY,
        data.daily[TODAY].revenue,
        units("1.30"),
        data.daily[TODAY].profit,
    )


def test_through_the_api_with_the_sandbox(api, clock, runner):
    """A code (then completed) and a cancel, bought through the API: the figures follow."""
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:1:")
    assert api.text("getNumber", service="ot", country="gb").startswith("ACCESS_NUMBER:2:")
    clock.travel(6)  # the sandbox delivers tg's code 5 s after purchase
    assert api.text("getStatus", id="1").startswith("STATUS_OK:")
    assert api.text("setStatus", id="1", status="6") == "ACCESS_ACTIVATION"
    clock.travel(120)  # past the early-cancel window
    assert api.text("setStatus", id="2", status="8") == "ACCESS_CANCEL"

    week = stats.overview().periods["7d"]
    tg_price, ot_price = units("1.69"), units("0.26")  # 1.30 and 0.20 × 1.3
    assert week.outcomes == {"code": 1, "cancelled": 1, "expired": 0, "failed": 0}
    assert (week.charged, week.refunds) == (tg_price + ot_price, ot_price)
    assert week.cost == units("1.30")
    assert week.profit == tg_price - units("1.30")
    assert week.success_rate == 0.5

    result = runner.invoke(args=["stats"])
    assert result.exit_code == 0, result.output
    assert "upstream balance: 998.70 USD" in result.output  # the sandbox kept 1.30
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert lines["profit"].split()[-1] == "0.39"
    assert "50.0%" in result.output
    assert "tg" in result.output.split("top services")[1]
