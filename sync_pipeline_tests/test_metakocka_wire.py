"""Metakocka wire quirks (metakocka-api.md §3): every documented form reads; one is written."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.metakocka.wire import (
    as_list,
    format_decimal,
    format_mk_date,
    format_mk_timestamp,
    parse_bool,
    parse_decimal,
    parse_mk_date,
    parse_mk_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("19.99", "19.99"),
        ("19,99", "19.99"),
        ("1.895,01", "1895.01"),
        ("1,895.01", "1895.01"),
        ("1.234.567,5", "1234567.5"),
        ("1,234,567", "1234567"),
        ("7,3", "7.3"),
        (" 100 ", "100"),
        ("-1", "-1"),
        ("0.22", "0.22"),
        (100, "100"),
        (19.99, "19.99"),
        ("1 895,01", "1895.01"),
    ],
)
def test_parse_decimal_reads_every_documented_form(value, expected):
    assert parse_decimal(value) == Decimal(expected)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_decimal_missing_is_none(value):
    assert parse_decimal(value) is None


@pytest.mark.parametrize("value", ["abc", "1.2.3,4,5", "NaN", "Infinity", True, float("nan"), "-"])
def test_parse_decimal_refuses_garbage(value):
    with pytest.raises(ValueError, match="number"):
        parse_decimal(value)


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        (Decimal("19.99"), 4, "19.9900"),
        (Decimal("1E+2"), None, "100"),
        (Decimal("100.00"), None, "100"),
        (Decimal("0.000001"), None, "0.000001"),
        (Decimal("2.00005"), 4, "2.0001"),
        (Decimal("-0.00"), 2, "0.00"),
        (Decimal("-0"), None, "0"),
        (Decimal("1234567.891"), 2, "1234567.89"),
    ],
)
def test_format_decimal_is_plain(value, places, expected):
    assert format_decimal(value, places) == expected


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
    )
)
def test_format_then_parse_is_exact(value):
    text = format_decimal(value)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text) == value


def test_as_list_normalises_list_or_bare_object():
    assert as_list(None) == []
    assert as_list("") == []
    assert as_list({"code": "a"}) == [{"code": "a"}]
    assert as_list([{"code": "a"}, {"code": "b"}]) == [{"code": "a"}, {"code": "b"}]
    assert as_list(({"code": "a"},)) == [{"code": "a"}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2014-09-13+02:00", date(2014, 9, 13)),
        ("2014-12-13+01:00", date(2014, 12, 13)),
        ("2014-09-13", date(2014, 9, 13)),
        ("23.03.2022", date(2022, 3, 23)),
        ("1.3.2022", date(2022, 3, 1)),
        ("2024-09-12T12:13:15+02:00", date(2024, 9, 12)),
        ("2024-09-12T00:30:00+02:00", date(2024, 9, 12)),  # local date, not the UTC one
        ("2014-09-13Z", date(2014, 9, 13)),
        (date(2020, 1, 2), date(2020, 1, 2)),
    ],
)
def test_parse_mk_date(value, expected):
    assert parse_mk_date(value) == expected


@pytest.mark.parametrize("value", ["13/09/2014", "2014-13-01", "31.02.2022", "tomorrow"])
def test_parse_mk_date_refuses_garbage(value):
    with pytest.raises(ValueError, match="not a date"):
        parse_mk_date(value)


def test_parse_mk_date_missing_is_none():
    assert parse_mk_date(None) is None
    assert parse_mk_date("") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-09-12T12:13:15+02:00", datetime(2024, 9, 12, 10, 13, 15, tzinfo=UTC)),
        ("2024-01-12T12:13:15+01:00", datetime(2024, 1, 12, 11, 13, 15, tzinfo=UTC)),
        ("2024-09-12T12:13:15Z", datetime(2024, 9, 12, 12, 13, 15, tzinfo=UTC)),
        ("2024-09-12T12:13:15", datetime(2024, 9, 12, 10, 13, 15, tzinfo=UTC)),  # Ljubljana time
        ("2024-09-12 12:13:15.250+02:00", datetime(2024, 9, 12, 10, 13, 15, 250000, tzinfo=UTC)),
        ("2014-09-13+02:00", datetime(2014, 9, 12, 22, 0, tzinfo=UTC)),
        ("23.03.2022", datetime(2022, 3, 22, 23, 0, tzinfo=UTC)),
    ],
)
def test_parse_mk_timestamp_is_utc(value, expected):
    parsed = parse_mk_timestamp(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_format_mk_date_uses_the_ljubljana_offset_of_that_date():
    assert format_mk_date(date(2014, 9, 13)) == "2014-09-13+02:00"
    assert format_mk_date(date(2014, 12, 13)) == "2014-12-13+01:00"
    # The switch days: summer time starts at 02:00 on the last Sunday of March, ends in October.
    assert format_mk_date(date(2024, 3, 31)) == "2024-03-31+01:00"
    assert format_mk_date(date(2024, 4, 1)) == "2024-04-01+02:00"
    assert format_mk_date(date(2024, 10, 27)) == "2024-10-27+02:00"
    assert format_mk_date(date(2024, 10, 28)) == "2024-10-28+01:00"


@given(st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)))
def test_mk_date_round_trips(value):
    assert parse_mk_date(format_mk_date(value)) == value


def test_format_mk_timestamp_is_ljubljana_local():
    assert (
        format_mk_timestamp(datetime(2024, 9, 12, 10, 13, 15, 999, tzinfo=UTC))
        == "2024-09-12T12:13:15+02:00"
    )
    assert (
        format_mk_timestamp(datetime(2024, 1, 12, 12, 0, tzinfo=timezone(timedelta(hours=-5))))
        == "2024-01-12T18:00:00+01:00"
    )
    with pytest.raises(ValueError, match="time zone"):
        format_mk_timestamp(datetime(2024, 1, 1))


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
def test_mk_timestamp_round_trips_to_the_second(value):
    moment = value.replace(tzinfo=UTC, microsecond=0)
    assert parse_mk_timestamp(format_mk_timestamp(moment)) == moment


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("false", False), ("TRUE", True), (True, True), (False, False), ("1", True),
     ("0", False), (None, None), ("", None)],
)  # fmt: skip
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


def test_parse_bool_refuses_garbage():
    with pytest.raises(ValueError, match="boolean"):
        parse_bool("maybe")
