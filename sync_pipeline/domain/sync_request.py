"""What an on-demand sync request names: a direction and the ids of the documents to sync.

Pure: no I/O. The API, the CLI, the sensors and the `sync_documents` job all read ids through
`split_document_ids`, so "which system does this id belong to" is decided in one place.

CRM ids are uuids and Metakocka ids (`mk_id`) are numeric strings, so an id tells its system by
its shape. A request in one direction names ids of the source system only; a request in `both`
directions (webhooks, the change sensor) may mix them.
"""

import hashlib
import json
import re
import uuid
from collections.abc import Iterable

from sync_pipeline.domain.directions import (
    BOTH,
    CRM_TO_METAKOCKA,
    METAKOCKA_TO_CRM,
    REQUEST_DIRECTIONS,
)

MAX_DOCUMENT_IDS = 500
"""Ids in one request; larger sets belong to the nightly reconciliation (or several requests)."""

_MK_ID = re.compile(r"^[0-9]{1,20}$")


def is_crm_id(value: str) -> bool:
    """A CRM `sales_documents.id`: a uuid in its canonical text form."""
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def is_metakocka_id(value: str) -> bool:
    """A Metakocka `mk_id`: a numeric string."""
    return isinstance(value, str) and bool(_MK_ID.match(value))


def split_document_ids(direction: str, ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """(CRM ids, Metakocka ids) named by a request, each without repeats, in the order given.

    Raises ValueError for an unknown direction or an id that does not belong to the direction's
    source system (`both` takes ids of either system).
    """
    if direction not in REQUEST_DIRECTIONS:
        raise ValueError(
            f"direction must be one of {', '.join(REQUEST_DIRECTIONS)}, not {direction!r}"
        )
    crm_ids: list[str] = []
    mk_ids: list[str] = []
    for raw in ids:
        value = str(raw).strip()
        if direction != METAKOCKA_TO_CRM and is_crm_id(value):
            crm_ids.append(value.lower())
        elif direction != CRM_TO_METAKOCKA and is_metakocka_id(value):
            mk_ids.append(value)
        else:
            expected = {
                CRM_TO_METAKOCKA: "a CRM document id (uuid)",
                METAKOCKA_TO_CRM: "a Metakocka document id (digits)",
                BOTH: "a CRM document id (uuid) or a Metakocka document id (digits)",
            }[direction]
            raise ValueError(f"{value[:60]!r} is not {expected}")
    return list(dict.fromkeys(crm_ids)), list(dict.fromkeys(mk_ids))


def request_fingerprint(
    organization_id: str, direction: str, document_ids: Iterable[str], all_unsynced: bool
) -> str:
    """Identity of a request's content: the same organization, direction and set of ids."""
    content = [organization_id, direction, sorted(set(document_ids)), bool(all_unsynced)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()
