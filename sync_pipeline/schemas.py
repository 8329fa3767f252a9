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
}
"""Frame-wide checks are reported once per column; this is the column the reason names."""


class DocumentHeaderSchema(pa.DataFrameModel):
    """One row per document (`documents_frame`)."""

    document_type: Series[str] = pa.Field(nullable=False)
    document_date: Series[pa.DateTime] = pa.Field(nullable=False)
    customer_name: Series[str] = pa.Field(nullable=False)
    currency: Series[str] = pa.Field(nullable=False)
    customer_country: Series[str] = pa.Field(nullable=True)
    line_count: Series[int]
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


def _failures(schema: type[pa.DataFrameModel], df: pd.DataFrame) -> list[tuple[int, str]]:
    """(row, "column: requirement (got value)") for every failed check, in row order."""
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
        (int(row), _reason(column, check, df.at[int(row), column]))
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
