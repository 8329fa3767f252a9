"""The two ways the pipeline turns a raw value into text, defined once.

Values reach the pipeline from JSON (None for a missing field) and from pandas frames (NaN or
`pd.NA` for a missing cell, since a frame column of strings with a gap is an `object` column
holding a float NaN). Calling `str()` on either would write "nan" or "<NA>" into a document, a
status row or an error message; these helpers make every missing value `None` instead.
"""

import math

import pandas as pd


def is_missing(value) -> bool:
    """True for None, `pd.NA` and a float NaN: a cell or field that holds no value."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def text_or_none(value) -> str | None:
    """The value as a string, or None when it is missing (ids, numbers, codes read from frames)."""
    return None if is_missing(value) else str(value)


def stripped_or_none(value) -> str | None:
    """The value as a string without surrounding blanks, or None when it is missing or blank
    (free text the user typed: names, labels, notes). A JSON text, what most values are, is
    stripped first: mapping calls this about 30 times a document."""
    if type(value) is str:
        return value.strip() or None
    if is_missing(value):
        return None
    return str(value).strip() or None
