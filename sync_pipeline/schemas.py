"""pandera models of the extracted frames, and the split into valid and quarantined documents.

Validation is lazy over the whole frame (`validate(df, lazy=True)`), so one bad document never hides
another and never stops the run: `validate_documents` reads pandera's `failure_cases`, writes one
readable reason per failed check ("line 2 quantity: must be > 0 (got -3)"), and returns the keys of
the documents that passed. A document is invalid when its header or any of its lines fails.
"""

import numbers
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipeline.domain.document import DOCUMENT_TYPES

CURRENCIES = frozenset({
    "EUR", "USD", "GBP", "CHF", "CZK", "HUF", "PLN", "RSD", "BAM", "HRK", "MKD", "ALL", "RON",
    "BGN", "TRY", "UAH", "SEK", "NOK", "DKK", "ISK", "JPY", "CNY", "HKD", "SGD", "KRW", "INR",
    "AUD", "NZD", "CAD", "MXN", "BRL", "ARS", "ZAR", "ILS", "AED", "SAR", "RUB", "THB", "MYR",
    "IDR", "PHP",
})  # fmt: skip
"""ISO 4217 codes a sales document may be in (HRK kept for Croatian documents before 2023)."""

TOTAL_TOLERANCE = 0.005

MESSAGES = {
    "document_type_known": "must be one of " + ", ".join(DOCUMENT_TYPES),
    "customer_name_not_blank": "must not be empty",
    "currency_iso_4217": "must be an ISO 4217 currency code",
    "country_iso_3166": "must be a 2-letter upper-case country code",
    "has_lines": "must be >= 1",
    "document_discount_percent": "must be between 0 and 100",
    "discount_value_not_negative": "must be >= 0",
    "total_is_subtotal_plus_tax": "must equal subtotal + tax_amount",
    "quantity_positive_unless_service": "must be > 0",
    "unit_price_not_negative": "must be >= 0",
    "tax_rate_percent": "must be between 0 and 100",
    "discount_percent_percent": "must be between 0 and 100",
    "description_not_blank": "must not be empty",
    "not_nullable": "must not be empty",
}
"""Check name (as pandera reports it) -> what the check requires, in words."""

COLUMN_OF_WIDE_CHECK = {
    "total_is_subtotal_plus_tax": "total",
    "quantity_positive_unless_service": "quantity",
    "subtotal_as_stated": "subtotal",
    "tax_as_stated": "tax_amount",
    "total_as_stated": "total",
}
"""Frame-wide checks are reported once per column; this is the column the reason names."""


class DocumentHeaderSchema(pa.DataFrameModel):
    """One row per document (`documents_frame`). The document's own discount is a percentage
    and an amount off (metakocka-api.md section 4: `discount_percent` / `discount_value`)."""

    document_type: Series[str] = pa.Field(nullable=False)
    document_date: Series[pa.DateTime] = pa.Field(nullable=False)
    customer_name: Series[str] = pa.Field(nullable=False)
    currency: Series[str] = pa.Field(nullable=False)
    customer_country: Series[str] = pa.Field(nullable=True)
    line_count: Series[int]
    discount_percent: Series[float]
    discount_value: Series[float]
    subtotal: Series[float]
    tax_amount: Series[float]
    total: Series[float]

    @pa.check("document_type", name="document_type_known")
    def document_type_known(cls, values: Series[str]) -> Series[bool]:
        return values.isin(DOCUMENT_TYPES)

    @pa.check("customer_name", name="customer_name_not_blank")
    def customer_name_not_blank(cls, values: Series[str]) -> Series[bool]:
        return values.str.strip().str.len() > 0

    @pa.check("currency", name="currency_iso_4217")
    def currency_iso_4217(cls, values: Series[str]) -> Series[bool]:
        return values.isin(CURRENCIES)

    @pa.check("customer_country", name="country_iso_3166")
    def country_iso_3166(cls, values: Series[str]) -> Series[bool]:
        return values.str.fullmatch(r"[A-Z]{2}").fillna(False).astype(bool)

    @pa.check("line_count", name="has_lines")
    def has_lines(cls, values: Series[int]) -> Series[bool]:
        return values >= 1

    @pa.check("discount_percent", name="document_discount_percent")
    def document_discount_percent(cls, values: Series[float]) -> Series[bool]:
        return values.between(0, 100)

    @pa.check("discount_value", name="discount_value_not_negative")
    def discount_value_not_negative(cls, values: Series[float]) -> Series[bool]:
        return values >= 0

    @pa.dataframe_check(name="total_is_subtotal_plus_tax")
    def total_is_subtotal_plus_tax(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["total"] - df["subtotal"] - df["tax_amount"]).abs() <= TOTAL_TOLERANCE

    class Config:
        strict = False


class DocumentLineSchema(pa.DataFrameModel):
    """One row per line (`lines_frame`). Only a service product's line may be negative
    (metakocka-api.md section 4)."""

    line_no: Series[int]
    description: Series[str] = pa.Field(nullable=False)
    quantity: Series[float]
    unit_price: Series[float]
    tax_rate: Series[float]
    discount_percent: Series[float]
    product_code: Series[str] = pa.Field(nullable=True)
    service: Series[bool]

    @pa.dataframe_check(name="quantity_positive_unless_service")
    def quantity_positive_unless_service(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["quantity"] > 0) | df["service"]

    @pa.check("unit_price", name="unit_price_not_negative")
    def unit_price_not_negative(cls, values: Series[float]) -> Series[bool]:
        return values >= 0

    @pa.check("tax_rate", name="tax_rate_percent")
    def tax_rate_percent(cls, values: Series[float]) -> Series[bool]:
        return values.between(0, 100)

    @pa.check("discount_percent", name="discount_percent_percent")
    def discount_percent_percent(cls, values: Series[float]) -> Series[bool]:
        return values.between(0, 100)

    @pa.check("description", name="description_not_blank")
    def description_not_blank(cls, values: Series[str]) -> Series[bool]:
        return values.str.strip().str.len() > 0

    class Config:
        strict = False


STATED_SUMS = {
    "subtotal": ("stated_subtotal", "sum_basic"),
    "tax_amount": ("stated_tax", "sum of sum_tax_*"),
    "total": ("stated_total", "sum_all"),
}
"""Derived total -> the column of the Metakocka sum it is compared with, and that sum's name."""


class StatedTotalsSchema(pa.DataFrameModel):
    """The totals derived from a Metakocka document's lines against the sums Metakocka sent
    with it. A difference is reported as a warning, never a reason to quarantine, and never
    corrected: Metakocka's sums are what it booked, and what the CRM gets
    (docs/metakocka.md). A document without stated sums (NaN) passes."""

    subtotal: Series[float]
    tax_amount: Series[float]
    total: Series[float]
    stated_subtotal: Series[float] = pa.Field(nullable=True)
    stated_tax: Series[float] = pa.Field(nullable=True)
    stated_total: Series[float] = pa.Field(nullable=True)

    @pa.dataframe_check(name="subtotal_as_stated")
    def subtotal_as_stated(cls, df: pd.DataFrame) -> Series[bool]:
        return _as_stated(df["subtotal"], df["stated_subtotal"])

    @pa.dataframe_check(name="tax_as_stated")
    def tax_as_stated(cls, df: pd.DataFrame) -> Series[bool]:
        return _as_stated(df["tax_amount"], df["stated_tax"])

    @pa.dataframe_check(name="total_as_stated")
    def total_as_stated(cls, df: pd.DataFrame) -> Series[bool]:
        return _as_stated(df["total"], df["stated_total"])

    class Config:
        strict = False


def _as_stated(derived: pd.Series, stated: pd.Series) -> pd.Series:
    return stated.isna() | ((derived - stated).abs() <= TOTAL_TOLERANCE)


@dataclass
class ValidationResult:
    """Keys of the documents that passed, and the reasons of those that did not."""

    valid_keys: set = field(default_factory=set)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: "ValidationResult") -> "ValidationResult":
        """Both results together; a key that failed anywhere is not valid."""
        failures = {key: list(reasons) for key, reasons in self.failures.items()}
        for key, reasons in other.failures.items():
            failures.setdefault(key, []).extend(reasons)
        return ValidationResult((self.valid_keys | other.valid_keys) - failures.keys(), failures)


def mapping_failure(key: str, reason: str) -> ValidationResult:
    """A document that could not be mapped at all (`MappingError`), as a failed validation."""
    return ValidationResult(set(), {key: [f"cannot be read: {reason}"]})


def validate_documents(
    header_df: pd.DataFrame, lines_df: pd.DataFrame, key: str
) -> ValidationResult:
    """Validate documents and their lines; `key` is the id column both frames carry."""
    header = header_df.reset_index(drop=True)
    lines = lines_df.reset_index(drop=True)
    failures: dict[str, list[str]] = {}
    for row, reason in _failures(DocumentHeaderSchema, header):
        failures.setdefault(header.at[row, key], []).append(reason)
    for row, reason in _failures(DocumentLineSchema, lines):
        line = f"line {lines.at[row, 'line_no']}"
        failures.setdefault(lines.at[row, key], []).append(f"{line} {reason}")
    return ValidationResult(set(header[key]) - failures.keys(), failures)


def stated_totals_differences(header_df: pd.DataFrame, key: str) -> dict[str, list[str]]:
    """{document key: ["total: 59.98 from the lines, Metakocka's sum_all is 59.97", ...]} for
    every Metakocka document whose derived totals differ from the sums Metakocka sent."""
    header = header_df.reset_index(drop=True)
    differences: dict[str, list[str]] = {}
    for row, column, _check in _failed_checks(StatedTotalsSchema, header):
        stated_column, name = STATED_SUMS[column]
        differences.setdefault(header.at[row, key], []).append(
            f"{column}: {header.at[row, column]:.2f} from the lines, Metakocka's {name} is "
            f"{header.at[row, stated_column]:.2f}"
        )
    return differences


def _failures(schema: type[pa.DataFrameModel], df: pd.DataFrame) -> list[tuple[int, str]]:
    """(row, "column: requirement (got value)") for every failed check, in row order."""
    return [
        (row, _reason(column, check, df.at[row, column]))
        for row, column, check in _failed_checks(schema, df)
    ]


def _failed_checks(schema: type[pa.DataFrameModel], df: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(row, column, check) for every failed check, in row order."""
    try:
        schema.validate(df, lazy=True)
        return []
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].isna().any():
            raise  # a missing column or a wrong dtype: a bug in the frame builder, not bad data
    cases = cases.assign(column=cases["check"].map(COLUMN_OF_WIDE_CHECK).fillna(cases["column"]))
    cases = cases.drop_duplicates(["index", "check", "column"]).sort_values(["index", "column"])
    return [
        (int(row), column, check)
        for row, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True)
    ]


def _reason(column: str, check: str, value) -> str:
    requirement = MESSAGES.get(check, f"failed check {check}")
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        return f"{column}: {requirement}"
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, numbers.Real):
        shown = f"{float(value):.10g}"
    else:
        shown = str(value)
    return f"{column}: {requirement} (got {shown})"
