"""Split an extraction into valid documents and quarantined ones, with readable reasons.

Validation runs the pandera models of `sync_pipeline.schemas` lazily over the whole frame, so
one bad document never stops the others and every failed check is reported, not just the first.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from sync_pipeline.domain.frames import documents_frame, known_by_link_frame, lines_frame
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.schemas import stated_totals_differences, validate_documents
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.extract import CRM, Extraction, Quarantined

KEY_BY_SIDE = {CRM: "crm_document_id", "metakocka": "metakocka_id"}


@dataclass
class ValidatedSide:
    side: str
    valid: pd.DataFrame
    """documents_frame rows that passed every check (with the `document` object column)."""
    quarantined: list[Quarantined]
    totals_differences: dict[str, list[str]] = field(default_factory=dict)
    """{id: reasons}: valid documents whose totals derived from their lines differ from the sums
    Metakocka sent with them (a warning: Metakocka's sums stay what is written)."""

    @property
    def quarantined_frame(self) -> pd.DataFrame:
        return quarantined_frame(self.quarantined)


def validate_extraction(
    extraction: Extraction, *, synced_hashes: Mapping[str, str] | None = None
) -> ValidatedSide:
    """Check every document; quarantine the ones that fail, with every reason.

    `synced_hashes` ({id on this side: content hash stored at its last sync}): a document whose
    content still hashes to its link's hash passed these checks when it was synced, and is not
    checked again. On a full sweep that is nearly every document, and the checks (with the
    totals they need) were the largest cost per document. A stricter rule added later applies to
    such a document from its next change on.
    """
    key = KEY_BY_SIDE[extraction.side]
    docs = extraction.documents
    hashes = [content_hash(doc, extraction.precision) for doc in docs]
    synced = synced_hashes or {}
    known = [synced.get(getattr(doc, key)) == h for doc, h in zip(docs, hashes, strict=True)]
    checked = [i for i, k in enumerate(known) if not k]
    header = documents_frame([docs[i] for i in checked], hashes=[hashes[i] for i in checked])
    lines = lines_frame([docs[i] for i in checked])
    result = validate_documents(header, lines, key=key)
    is_valid = header[key].isin(result.valid_keys)
    differences = stated_totals_differences(header.loc[is_valid], key)
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
    valid = header.loc[is_valid]
    if len(checked) < len(docs):
        unchanged = [i for i, k in enumerate(known) if k]
        as_synced = documents_frame(
            [docs[i] for i in unchanged], hashes=[hashes[i] for i in unchanged], totals=False
        )
        valid = pd.concat([valid, as_synced], ignore_index=True)
    if extraction.known_by_link:
        # Unchanged since they were synced (and checked): the push verifies that before a write.
        valid = pd.concat([valid, known_by_link_frame(extraction.known_by_link)], ignore_index=True)
    return ValidatedSide(extraction.side, valid.reset_index(drop=True), quarantined, differences)


def synced_hashes(links: pd.DataFrame) -> dict[str, dict[str, str]]:
    """{side: {id: content hash at the last sync}} of the confirmed links, for
    `validate_extraction`."""
    linked = links.loc[
        (links["state"] == LINK_LINKED)
        & links["crm_document_id"].notna()
        & links["metakocka_id"].notna()
        & links["content_hash"].notna()
    ]
    return {
        side: dict(zip(linked[key], linked["content_hash"], strict=True))
        for side, key in KEY_BY_SIDE.items()
    }


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
