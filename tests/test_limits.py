"""The limit-string grammar: every valid form parses back to itself; garbage never parses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_quota import ConfigurationError, Limit, parse_limits
from flask_quota.limits import MAX_COUNT, Unit, parse_limit

UNITS = [unit.name.lower() for unit in Unit]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/second", [Limit(count=10)]),
        ("10 per second", [Limit(count=10)]),
        ("10 PER Seconds", [Limit(count=10)]),
        ("5/10 seconds", [Limit(count=5, multiple=10)]),
        ("1000/day", [Limit(count=1000, unit=Unit.DAY)]),
        ("3 per 2 hours", [Limit(count=3, multiple=2, unit=Unit.HOUR)]),
        ("1/month", [Limit(count=1, unit=Unit.MONTH)]),
        ("10/second;1000/day", [Limit(count=10), Limit(count=1000, unit=Unit.DAY)]),
        (" 10/second ; 1000/day ", [Limit(count=10), Limit(count=1000, unit=Unit.DAY)]),
    ],
)
def test_valid_forms(text: str, expected: list[Limit]) -> None:
    assert list(parse_limits(text)) == expected


def test_units_are_seconds_with_30_day_months_and_365_day_years() -> None:
    assert parse_limit("1/month").period_s == 30 * 86_400
    assert parse_limit("1/year").period_s == 365 * 86_400
    assert parse_limit("1/2 minutes").period_us == 120_000_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "0/second",
        "10/0 seconds",
        "10/second;",
        ";10/second",
        "10/second;;1/day",
        "10/fortnight",
        "10",
        "ten/second",
        "-1/second",
        "1.5/second",
        "10/s",
        "10//second",
        "10 per",
        "10/second extra",
        "１０/second",
    ],
)
def test_invalid_forms_name_the_string(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_limits(text)
    assert repr(text) in str(info.value)


def test_error_says_what_was_expected() -> None:
    with pytest.raises(ConfigurationError, match="unit must be second, minute, hour"):
        parse_limits("10/fortnight")


def test_counts_beyond_exact_arithmetic_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="at most"):
        parse_limits(f"{MAX_COUNT + 1}/second")
    with pytest.raises(ConfigurationError, match="at most 10 years"):
        parse_limits("1/11 years")


def test_non_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_limits(10)  # type: ignore[arg-type]


limits_strategy = st.builds(
    Limit,
    count=st.integers(1, MAX_COUNT),
    multiple=st.integers(1, 120),
    unit=st.sampled_from([Unit.SECOND, Unit.MINUTE, Unit.HOUR, Unit.DAY]),
)


@given(st.lists(limits_strategy, min_size=1, max_size=4), st.sampled_from(["/", " per "]))
def test_round_trip(limits: list[Limit], separator: str) -> None:
    texts = []
    for limit in limits:
        unit = limit.unit.name.lower()
        period = unit if limit.multiple == 1 else f"{limit.multiple} {unit}s"
        texts.append(f"{limit.count}{separator}{period}")
    assert list(parse_limits(";".join(texts))) == limits
    assert list(parse_limits(";".join(str(limit) for limit in limits))) == limits


@given(st.text(max_size=40))
def test_garbage_never_parses_into_a_limit(text: str) -> None:
    try:
        limits = parse_limits(text)
    except ConfigurationError:
        return
    # Whatever parsed must be a canonical limit string in disguise.
    assert limits
    for part, limit in zip(text.split(";"), limits, strict=True):
        assert parse_limit(str(limit)) == limit
        assert part.strip().split("/")[0].split(" ")[0].isdigit()
