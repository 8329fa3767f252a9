"""pandera validation: each kind of bad document gets its own readable reason; good ones pass."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pandas as pd
import pandera.pandas as pa
import pytest

from sync_pipeline.domain.amounts import StatedTotals
from sync_pipeline.domain.document import Customer, DocumentLine, SalesDocument
from sync_pipeline.domain.frames import documents_frame, lines_frame
from sync_pipeline.schemas import (
    CURRENCIES,
    ValidationResult,
    mapping_failure,
    stated_totals_differences,
    validate_documents,
)
from sync_pipeline.sync.extract import Extraction
from sync_pipeline.sync.validate import validate_extraction

D = Decimal
PRODUCT = DocumentLine("Widget", D("2"), D("10.5"), D("22"), product_code="W-1")
SERVICE = DocumentLine("Delivery", D("1"), D("5"), D("22"), product_code="SRV", service=True)


def document(key: str, **overrides) -> SalesDocument:
    fields = {
        "organization_id": "org",
        "document_type": "invoice",
        "document_date": date(2024, 1, 2),
        "customer": Customer("ACME", country="SI"),
        "lines": (PRODUCT, SERVICE),
        "crm_document_id": key,
        "metakocka_id": f"mk-{key}",
    }
    return SalesDocument(**fields | overrides)


def validate(*docs: SalesDocument, key: str = "crm_document_id") -> ValidationResult:
    docs = list(docs)
    return validate_documents(documents_frame(docs), lines_frame(docs), key=key)


def test_valid_documents_pass():
    docs = [
        document("a"),
        document("b", customer=Customer("Kunde GmbH", country=None), currency="CHF"),
        document("c", lines=(PRODUCT, replace(SERVICE, description="Popust", quantity=D("-1")))),
        document(
            "d", document_type="credit_note", lines=(replace(PRODUCT, discount_percent=D(100)),)
        ),
        document("e", discount_percent=D("10"), discount_value=D("2.50")),
    ]
    result = validate(*docs)
    assert result.valid_keys == {"a", "b", "c", "d", "e"}
    assert result.failures == {}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"document_type": "memo"},
         "document_type: must be one of offer, order, invoice, credit_note, proforma (got 'memo')"),
        ({"document_type": None}, "document_type: must not be empty"),
        ({"document_date": None}, "document_date: must not be empty"),
        ({"customer": Customer("   ")}, "customer_name: must not be empty"),
        ({"currency": "XXX"}, "currency: must be an ISO 4217 currency code (got 'XXX')"),
        ({"currency": "eur"}, "currency: must be an ISO 4217 currency code (got 'eur')"),
        ({"customer": Customer("A", country="Slovenia")},
         "customer_country: must be a 2-letter upper-case country code (got 'Slovenia')"),
        ({"customer": Customer("A", country="si")},
         "customer_country: must be a 2-letter upper-case country code (got 'si')"),
        ({"lines": ()}, "line_count: must be >= 1 (got 0)"),
        ({"discount_percent": D("120")}, "discount_percent: must be between 0 and 100 (got 120)"),
        ({"discount_value": D("-5")}, "discount_value: must be >= 0 (got -5)"),
        ({"lines": (PRODUCT, replace(PRODUCT, quantity=D("-3")))},
         "line 2 quantity: must be > 0 (got -3)"),
        ({"lines": (replace(PRODUCT, quantity=D("0")),)}, "line 1 quantity: must be > 0 (got 0)"),
        ({"lines": (replace(PRODUCT, unit_price=D("-1.5")),)},
         "line 1 unit_price: must be >= 0 (got -1.5)"),
        ({"lines": (replace(PRODUCT, tax_rate=D("122")),)},
         "line 1 tax_rate: must be between 0 and 100 (got 122)"),
        ({"lines": (replace(SERVICE, discount_percent=D("-5")),)},
         "line 1 discount_percent: must be between 0 and 100 (got -5)"),
        ({"lines": (replace(SERVICE, discount_percent=D("100.5")),)},
         "line 1 discount_percent: must be between 0 and 100 (got 100.5)"),
        ({"lines": (PRODUCT, replace(SERVICE, description=" ")),},
         "line 2 description: must not be empty"),
    ],
)  # fmt: skip
def test_each_invalid_kind_has_its_reason(overrides, reason):
    result = validate(document("good"), document("bad", **overrides))
    assert result.valid_keys == {"good"}
    assert result.failures == {"bad": [reason]}


def test_every_failure_of_a_document_is_reported():
    bad = document(
        "bad",
        customer=Customer(""),
        currency="ZZZ",
        lines=(
            replace(PRODUCT, quantity=D("-1"), tax_rate=D("-1")),
            replace(SERVICE, description=""),
        ),
    )
    assert validate(bad).failures == {
        "bad": [
            "currency: must be an ISO 4217 currency code (got 'ZZZ')",
            "customer_name: must not be empty",
            "line 1 quantity: must be > 0 (got -1)",
            "line 1 tax_rate: must be between 0 and 100 (got -1)",
            "line 2 description: must not be empty",
        ]
    }


def test_totals_must_add_up():
    header = documents_frame([document("a"), document("b")])
    header.loc[1, "total"] += 0.02
    header.loc[0, "total"] += 0.004  # within the tolerance
    result = validate_documents(
        header, lines_frame([document("a"), document("b")]), "crm_document_id"
    )
    assert result.valid_keys == {"a"}
    assert result.failures["b"] == ["total: must equal subtotal + tax_amount (got 31.74)"]


def test_metakocka_s_own_sums_are_compared_never_a_reason_to_quarantine():
    """Derived 21 + 5 = 26.00 net, 5.72 tax, 31.72 in all; Metakocka rounded its tax per code."""
    as_stated = StatedTotals(D("26.00"), None, (("220", D("5.72")),), D("31.72"))
    per_code = StatedTotals(D("26.00"), None, (("220", D("4.63")), ("ex4", D("1.10"))), D("31.73"))
    docs = [
        document("a", stated_totals=as_stated),
        document("b", stated_totals=per_code),
        document("c"),  # no sums stated (a CRM document)
    ]
    extraction = Extraction("metakocka", "org", documents=docs)

    validated = validate_extraction(extraction)

    assert set(validated.valid["metakocka_id"]) == {"mk-a", "mk-b", "mk-c"}
    assert validated.quarantined == []
    assert validated.totals_differences == {
        "mk-b": [
            "tax_amount: 5.72 from the lines, Metakocka's sum of sum_tax_* is 5.73",
            "total: 31.72 from the lines, Metakocka's sum_all is 31.73",
        ]
    }
    assert stated_totals_differences(documents_frame(docs[:1]), "metakocka_id") == {}


def test_a_mixed_frame_splits_by_key():
    docs = [document(str(i)) for i in range(50)]
    docs[7] = replace(docs[7], currency="???")
    docs[20] = replace(docs[20], lines=(replace(PRODUCT, unit_price=D(-1)),))
    docs[21] = replace(docs[21], customer=Customer(""))
    result = validate(*docs, key="metakocka_id")
    assert set(result.failures) == {"mk-7", "mk-20", "mk-21"}
    assert result.valid_keys == {f"mk-{i}" for i in range(50)} - {"mk-7", "mk-20", "mk-21"}


def test_frames_with_a_non_default_index_validate():
    docs = [document("a"), document("b", currency="???")]
    header = documents_frame(docs).set_axis([10, 11])
    lines = lines_frame(docs).set_axis([5, 6, 7, 8])
    result = validate_documents(header, lines, "crm_document_id")
    assert result.valid_keys == {"a"} and set(result.failures) == {"b"}


def test_empty_frames_validate():
    assert validate() == ValidationResult(set(), {})


def test_a_missing_column_is_a_bug_not_a_bad_document():
    header = documents_frame([document("a")]).drop(columns="currency")
    with pytest.raises(pa.errors.SchemaErrors):
        validate_documents(header, lines_frame([document("a")]), "crm_document_id")


def test_mapping_failures_merge_into_the_result():
    result = validate(document("a"), document("b")).merge(mapping_failure("c", "doc_date: missing"))
    result = result.merge(mapping_failure("a", "partner: missing"))
    assert result.valid_keys == {"b"}
    assert result.failures == {
        "c": ["cannot be read: doc_date: missing"],
        "a": ["cannot be read: partner: missing"],
    }


def test_the_currency_list_is_real_iso_4217():
    assert {"EUR", "USD", "GBP", "CHF", "CZK", "HUF", "PLN", "RSD", "BAM", "HRK"} <= CURRENCIES
    assert {"SEK", "NOK", "DKK", "JPY", "CNY"} <= CURRENCIES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCIES)
    assert len(CURRENCIES) >= 40


def test_validation_of_100k_lines_is_vectorised():
    docs = [document(str(i)) for i in range(50_000)]
    header, lines = documents_frame(docs), lines_frame(docs)
    lines.loc[lines.index[::1000], "quantity"] = -1.0  # every 1000th line: every 500th document
    result = validate_documents(header, lines, "crm_document_id")
    assert len(result.failures) == 100
    assert isinstance(header, pd.DataFrame) and len(result.valid_keys) == 49_900
