"""Split an extraction into valid documents and quarantined ones, with readable reasons.

Validation runs the pandera models of `sync_pipeline.schemas` lazily over the whole frame, so
one bad document never stops the others and every failed check is reported, not just the first.
"""

from dataclasses import dataclass

import pandas as pd

from sync_pipeline.domain.frames import documents_frame, lines_frame
from sync_pipeline.schemas import validate_documents
from sync_pipeline.sync.extract import CRM, Extraction, Quarantined

KEY_BY_SIDE = {CRM: "crm_document_id", "metakocka": "metakocka_id"}


@dataclass
class ValidatedSide:
    side: str
    valid: pd.DataFrame
    """documents_frame rows that passed every check (with the `document` object column)."""
    quarantined: list[Quarantined]

    @property
    def quarantined_frame(self) -> pd.DataFrame:
        return quarantined_frame(self.quarantined)


def validate_extraction(extraction: Extraction) -> ValidatedSide:
    key = KEY_BY_SIDE[extraction.side]
    header = documents_frame(extraction.documents)
    lines = lines_frame(extraction.documents)
    result = validate_documents(header, lines, key=key)
    is_valid = header[key].isin(result.valid_keys)
    quarantined = list(extraction.unmappable)
    for record in header.loc[~is_valid].itertuples(index=False):
        quarantined.append(
            Quarantined(
                side=extraction.side,
                crm_document_id=_none_if_na(record.crm_document_id),
                metakocka_id=_none_if_na(record.metakocka_id),
                document_type=_none_if_na(record.document_type),
                document_number=_none_if_na(
                    record.document_number
                    if extraction.side == CRM
                    else record.metakocka_count_code
                ),
                reasons=tuple(result.failures.get(getattr(record, key), ("failed validation",))),
            )
        )
    return ValidatedSide(extraction.side, header.loc[is_valid].reset_index(drop=True), quarantined)


QUARANTINE_COLUMNS = [
    "side",
    "crm_document_id",
    "metakocka_id",
    "document_type",
    "document_number",
    "reasons",
]


def quarantined_frame(entries: list[Quarantined]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (
                q.side,
                q.crm_document_id,
                q.metakocka_id,
                q.document_type,
                q.document_number,
                q.reasons,
            )
            for q in entries
        ],
        columns=QUARANTINE_COLUMNS,
    )


def _none_if_na(value):
    return (
        None
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA
        else value
    )
