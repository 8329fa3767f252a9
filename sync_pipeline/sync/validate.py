"""Split an extraction into valid documents and quarantined ones, with readable reasons.

Validation runs the pandera models of `sync_pipeline.schemas` lazily over a whole frame of
documents, so one bad document never stops the others and every failed check is reported, not
just the first. `check_documents` validates one batch; a full sweep validates its documents batch
by batch while it reads them (`sync/lean.py`), everything else validates an extraction at once
(`validate_extraction`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.frames import documents_frame, lines_frame, plan_frame
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.schemas import stated_totals_differences, validate_documents
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.extract import CRM, Extraction, Quarantined

KEY_BY_SIDE = {CRM: "crm_document_id", "metakocka": "metakocka_id"}


@dataclass
class ValidatedSide:
    side: str
    valid: pd.DataFrame
    """The documents that passed every check (or were not checked again: their content is what
    was last synced), in the columns the plan reads (`frames.PLAN_COLUMNS`), each with its
    `document`: whole, summarised, or known by its link."""
    quarantined: list[Quarantined]
    totals_differences: dict[str, list[str]] = field(default_factory=dict)
    """{id: reasons}: valid documents whose totals derived from their lines differ from the sums
    Metakocka sent with them (a warning: Metakocka's sums stay what is written)."""

    @property
    def quarantined_frame(self) -> pd.DataFrame:
        return quarantined_frame(self.quarantined)


@dataclass
class Checked:
    """One batch after the checks: the positions of its valid documents, in order, and the
    others' reasons (with their positions)."""

    valid: list[int]
    quarantined: list[Quarantined]
    quarantined_positions: list[int]
    totals_differences: dict[str, list[str]]


def check_documents(side: str, docs: list[SalesDocument], hashes: list[str]) -> Checked:
    """Run every check on `docs` (with their content `hashes`); quarantine the ones that fail,
    with every reason."""
    key = KEY_BY_SIDE[side]
    header = documents_frame(docs, hashes=hashes)
    result = validate_documents(header, lines_frame(docs), key=key)
    is_valid = header[key].isin(result.valid_keys)
    differences = stated_totals_differences(header.loc[is_valid], key)
    quarantined = []
    for record in header.loc[~is_valid].itertuples(index=False):
        quarantined.append(
            Quarantined(
                side=side,
                crm_document_id=_none_if_na(record.crm_document_id),
                metakocka_id=_none_if_na(record.metakocka_id),
                document_type=_none_if_na(record.document_type),
                document_number=_none_if_na(
                    record.document_number if side == CRM else record.metakocka_count_code
                ),
                reasons=tuple(result.failures.get(getattr(record, key), ("failed validation",))),
            )
        )
    flags = is_valid.tolist()
    return Checked(
        [i for i, ok in enumerate(flags) if ok],
        quarantined,
        [i for i, ok in enumerate(flags) if not ok],
        differences,
    )


def validate_extraction(
    extraction: Extraction,
    *,
    synced_hashes: Mapping[str, str] | None = None,
    known_by_link: Sequence = (),
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
    to_check = [i for i, k in enumerate(known) if not k]
    checked = check_documents(
        extraction.side, [docs[i] for i in to_check], [hashes[i] for i in to_check]
    )
    passed = [to_check[i] for i in checked.valid]
    # Unchanged since they were synced (and checked): the push verifies that of a counterpart
    # known by its link before a write.
    unchanged = [i for i, k in enumerate(known) if k]
    links = known_by_link  # `LinkedCounterpart`s of an incremental run (sync/counterparts.py)
    valid = plan_frame(
        [*(docs[i] for i in passed), *(docs[i] for i in unchanged), *links],
        [*(hashes[i] for i in passed), *(hashes[i] for i in unchanged)]
        + [c.content_hash for c in links],
    )
    quarantined = [*extraction.unmappable, *checked.quarantined]
    return ValidatedSide(extraction.side, valid, quarantined, checked.totals_differences)


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
