"""What `flask worker` says: a line for a pass that did something, an error once per change,
then "still failing since …" now and then (issue 29)."""

import datetime as dt
import logging

from reseller.services.worker import PassReport
from reseller.worker_commands import PassLog

T0 = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)


def at(seconds):
    return T0 + dt.timedelta(seconds=seconds)


def failing(*messages):
    report = PassReport()
    for message in messages:
        report.fail(message, RuntimeError(message))
    return report


def test_an_idle_pass_says_nothing_and_a_busy_one_says_one_line():
    passes = PassLog()
    assert passes.lines(PassReport(), at(0)) == []
    busy = PassReport(polled=2, expired=1)
    (line,) = passes.lines(busy, at(2))
    assert line.startswith("polled 2, expired 1")
    assert "errors" not in line


def test_a_failing_step_is_said_once_per_change_then_still_failing_then_recovered(caplog):
    passes = PassLog()
    caplog.set_level(logging.ERROR, logger="reseller.worker_commands")
    assert passes.lines(failing("prices: BAD_KEY at hero"), at(0)) == [
        "failing: prices: BAD_KEY at hero"
    ]
    assert len(caplog.records) == 1 and caplog.records[0].exc_info  # the traceback, once
    for second in range(2, 299, 2):  # a pass every two seconds: silence
        assert passes.lines(failing("prices: BAD_KEY at hero"), at(second)) == []
    assert len(caplog.records) == 1
    assert passes.lines(failing("prices: BAD_KEY at hero"), at(300)) == [
        "still failing since 2026-12-08 10:00:00 UTC: prices: BAD_KEY at hero"
    ]
    assert passes.lines(failing("prices: BAD_KEY at hero"), at(302)) == []
    # Its error changes: said again, once.
    assert passes.lines(failing("prices: ERROR_SQL at hero"), at(304)) == [
        "failing: prices: ERROR_SQL at hero"
    ]
    assert passes.lines(failing("prices: ERROR_SQL at hero"), at(306)) == []
    assert passes.lines(PassReport(), at(308)) == [
        "recovered: prices (failing since 2026-12-08 10:05:04 UTC)"
    ]
    assert passes.lines(PassReport(), at(310)) == []


def test_steps_fail_independently():
    passes = PassLog()
    lines = passes.lines(failing("prices: BAD_KEY at hero", "poll_due: OperationalError"), at(0))
    assert sorted(lines) == [
        "failing: poll_due: OperationalError",
        "failing: prices: BAD_KEY at hero",
    ]
    assert passes.lines(failing("prices: BAD_KEY at hero"), at(2)) == [
        "recovered: poll_due (failing since 2026-12-08 10:00:00 UTC)"
    ]


def test_the_worker_loop_is_quiet_when_idle(runner):
    result = runner.invoke(args=["worker", "--passes", "3", "--interval", "0"])
    assert result.exit_code == 0, result.output
    # The first pass reads the prices; the two after it have nothing to do.
    assert len([line for line in result.output.splitlines() if line.startswith("polled")]) <= 1


def test_one_pass_for_cron_always_gives_its_account(runner):
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("polled 0, expired 0, settled 0")


def test_a_failing_rent_poll_is_a_pass_error_said_once(api, customer, clock, monkeypatch):
    from reseller.services import rentals, worker

    rent_id = api("getRentNumber", service="tg", time="4", country="12").get_json()["phone"]["id"]

    def broken(rental_id, actor):
        raise RuntimeError("provider answer unreadable")

    monkeypatch.setattr(rentals, "refresh", broken)
    passes = PassLog()
    said = []
    for second in (30, 70, 110):  # each pass finds the rent's poll slot due again
        clock.travel(40 if second > 30 else 30)
        report = worker.run_once()
        assert f"rent poll {rent_id}: RuntimeError" in report.errors
        said += passes.lines(report, at(second))
    errors = [line for line in said if not line.startswith("polled")]  # prices read: work
    assert errors == [f"failing: rent poll {rent_id}: RuntimeError"]
