"""Canonical documents as pandas frames: one row per document, and one row per line.

Validation (pandera) and the sync plan work on whole frames, so a run over 100,000 documents is a
few vectorised passes instead of 100,000 Python calls. Each column is built in one pass over the
documents and the frame is assembled once; the `document` column keeps the `SalesDocument` itself,
so the push step gets back exactly what was validated and planned.
"""

import numpy as np
import pandas as pd

from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.hashing import content_hash

TEXT = "str"

DOCUMENT_COLUMNS = {
    "crm_document_id": TEXT,
    "metakocka_id": TEXT,
    "metakocka_doc_type": TEXT,
    "document_type": TEXT,
    "document_number": TEXT,
    "metakocka_count_code": TEXT,
    "document_date": "datetime64[us]",
    "currency": TEXT,
    "customer_name": TEXT,
    "customer_country": TEXT,
    "discount_percent": "float64",
    "discount_value": "float64",
    "subtotal": "float64",
    "tax_amount": "float64",
    "total": "float64",
    "stated_subtotal": "float64",
    "stated_tax": "float64",
    "stated_total": "float64",
    "line_count": "int64",
    "updated_at": "datetime64[us, UTC]",
    "content_hash": TEXT,
    "document": object,
}

LINE_COLUMNS = {
    "crm_document_id": TEXT,
    "metakocka_id": TEXT,
    "line_no": "int64",
    "description": TEXT,
    "quantity": "float64",
    "unit_price": "float64",
    "discount_percent": "float64",
    "tax_rate": "float64",
    "product_code": TEXT,
    "unit": TEXT,
    "service": "bool",
    "net_amount": "float64",
}


def documents_frame(docs: list[SalesDocument], *, hashes: list[str] | None = None) -> pd.DataFrame:
    """One row per document, in the order given (the columns of `DOCUMENT_COLUMNS`): what
    validation checks. `hashes`: the documents' content hashes when already known. The `stated_*`
    columns are the sums Metakocka sent with a document (NaN for none), for validation to compare.
    """
    derived = [doc.totals for doc in docs]
    subtotals = [float(t.subtotal) for t in derived]
    taxes = [float(t.tax) for t in derived]
    sums = [float(t.total) for t in derived]
    stated = [doc.stated_totals for doc in docs]
    columns = {
        "crm_document_id": [doc.crm_document_id for doc in docs],
        "metakocka_id": [doc.metakocka_id for doc in docs],
        "metakocka_doc_type": [doc.metakocka_doc_type for doc in docs],
        "document_type": [doc.document_type for doc in docs],
        "document_number": [doc.document_number for doc in docs],
        "metakocka_count_code": [doc.metakocka_count_code for doc in docs],
        "document_date": pd.to_datetime([doc.document_date for doc in docs]),
        "currency": [doc.currency for doc in docs],
        "customer_name": [doc.customer.name for doc in docs],
        "customer_country": [doc.customer.country for doc in docs],
        "discount_percent": [float(doc.discount_percent) for doc in docs],
        "discount_value": [float(doc.discount_value) for doc in docs],
        "subtotal": subtotals,
        "tax_amount": taxes,
        "total": sums,
        "stated_subtotal": [_float(s.subtotal if s else None) for s in stated],
        "stated_tax": [_float(s.tax if s else None) for s in stated],
        "stated_total": [_float(s.total if s else None) for s in stated],
        "line_count": [len(doc.lines) for doc in docs],
        "updated_at": pd.to_datetime([doc.updated_at for doc in docs], utc=True),
        "content_hash": hashes if hashes is not None else [content_hash(doc) for doc in docs],
        "document": _objects(docs),
    }
    return _frame(columns, DOCUMENT_COLUMNS)


PLAN_COLUMNS = {
    "crm_document_id": TEXT,
    "metakocka_id": TEXT,
    "content_hash": TEXT,
    "updated_at": "datetime64[us, UTC]",
    "document": object,
}
"""What the plan reads of a side's documents (`sync/planning.py`)."""


def plan_frame(docs: list, hashes: list[str]) -> pd.DataFrame:
    """One row per document with what the plan reads (the columns of `PLAN_COLUMNS`): its ids,
    content hash and change time, and the document itself, whole or summarised
    (`domain/summary.py`), or known only by its link (`sync.counterparts.LinkedCounterpart`,
    which has no change time)."""
    columns = {
        "crm_document_id": [doc.crm_document_id for doc in docs],
        "metakocka_id": [doc.metakocka_id for doc in docs],
        "content_hash": hashes,
        "updated_at": pd.to_datetime([getattr(doc, "updated_at", None) for doc in docs], utc=True),
        "document": _objects(docs),
    }
    return _frame(columns, PLAN_COLUMNS)


def lines_frame(docs: list[SalesDocument]) -> pd.DataFrame:
    """One row per line: the document's ids, `line_no` (1-based) and the line's fields."""
    rows = [
        (
            doc.crm_document_id,
            doc.metakocka_id,
            number,
            line.description,
            float(line.quantity),
            float(line.unit_price),
            float(line.discount_percent),
            float(line.tax_rate),
            line.product_code,
            line.unit,
            line.service,
            float(line.net_amount),
        )
        for doc in docs
        for number, line in enumerate(doc.lines, start=1)
    ]
    columns = dict(zip(LINE_COLUMNS, zip(*rows, strict=True), strict=True)) if rows else {}
    return _frame(columns, LINE_COLUMNS)


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _frame(columns: dict, dtypes: dict) -> pd.DataFrame:
    """Assemble with fixed dtypes, so an empty frame (or an all-null column) has the same schema."""
    return pd.DataFrame(
        {name: pd.Series(columns.get(name, []), dtype=dtype) for name, dtype in dtypes.items()}
    )
