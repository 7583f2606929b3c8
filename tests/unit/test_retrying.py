"""step.retrying: the retry policy's arithmetic, the one Retry-After reading, and the tenacity loop."""

from __future__ import annotations

import email.utils
import math

import pytest
import tenacity

from step.retrying import RetryPolicy, parse_retry_after, retrying


def test_schedule_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=7, backoff_base=0.5, backoff_cap=4.0)
    assert policy.schedule() == (0.5, 1.0, 2.0, 4.0, 4.0, 4.0)


def test_no_retries_means_one_attempt_and_no_waits() -> None:
    policy = RetryPolicy.no_retries()
    assert policy.attempts == 1
    assert policy.schedule() == ()


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 2.0), (1.0, 1.0), (0.5, 1.5)])
def test_jitter_scales_the_wait_down_by_at_most_the_jitter_fraction(rand: float, expected: float) -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=10.0, jitter=0.5)
    assert policy.delay(2, rand=lambda: rand) == pytest.approx(expected)


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, retry_after_cap=10.0)
    assert policy.delay(1, retry_after=3.0, rand=lambda: 0.0) == 3.0
    assert policy.delay(1, retry_after=120.0) == 10.0


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"jitter": 1.5}, {"deadline": -1.0}])
def test_nonsense_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**bad)  # type: ignore[arg-type]


NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("120", 120.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),  # RFC 9110: delay-seconds is 1*DIGIT, so no sign ...
        ("+3", None),
        ("1.5", None),  # ... and no fraction (client-go and go-retryablehttp refuse it too)
        ("1e3", None),
        ("\u0663", None),  # an Arabic-Indic digit is a digit to str.isdigit(), not to HTTP
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_delay_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_retry_after_absurdly_many_digits_is_infinite_and_capped_by_the_policy() -> None:
    seconds = parse_retry_after("9" * 400, now=NOW)
    assert seconds == math.inf
    assert RetryPolicy(retry_after_cap=30.0).delay(1, retry_after=seconds) == 30.0


@pytest.mark.parametrize(
    "header",
    [
        email.utils.formatdate(NOW + 10, usegmt=True),  # IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        "Monday, 12-Jan-70 13:46:50 GMT",  # the obsolete RFC 850 form
        "Mon Jan 12 13:46:50 1970",  # the obsolete asctime form, which is GMT with no zone
    ],
)
def test_retry_after_http_dates_count_from_now(header: str) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(10.0)


def test_retry_after_a_date_in_the_past_means_at_once() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW - 60, usegmt=True), now=NOW) == 0.0


def test_retrying_stops_after_the_attempts_and_reraises() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def fails() -> None:
        calls.append(1)
        raise ConnectionError("down")

    policy = RetryPolicy(attempts=3, backoff_base=1.0, jitter=0.0, deadline=math.inf)
    loop = retrying(policy, retry=tenacity.retry_if_exception_type(ConnectionError), sleep=sleeps.append)
    with pytest.raises(ConnectionError, match="down"):
        loop(fails)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_retrying_honours_retry_after_and_returns_the_last_result_when_asked() -> None:
    sleeps: list[float] = []
    answers = iter([503, 503, 503])
    loop = retrying(
        RetryPolicy(attempts=3, jitter=0.0, retry_after_cap=5.0),
        retry=tenacity.retry_if_result(lambda status: status == 503),
        sleep=sleeps.append,
        retry_after=lambda state: 9.0,
        on_give_up=lambda state: state.outcome.result() if state.outcome else None,
    )
    assert loop(lambda: next(answers)) == 503
    assert sleeps == [5.0, 5.0] and loop.statistics["attempt_number"] == 3


def test_no_retries_is_one_attempt() -> None:
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise ConnectionError("down")

    sleeps: list[float] = []
    loop = retrying(
        RetryPolicy.no_retries(), retry=tenacity.retry_if_exception_type(ConnectionError), sleep=sleeps.append
    )
    with pytest.raises(ConnectionError):
        loop(fails)
    assert calls == [1] and sleeps == []
