"""Field ownership: which system is the source of truth for each field of a sales document.

The CRM owns the commercial content (what was sold to whom, on what terms); Metakocka, the ERP,
owns what happens to the document afterwards (its own number, payment and fulfilment status).
A field flows only from its owner to the other side, so a change to a field on the side that
does not own it never overwrites the owner's value:

- CRM-owned content is exactly what `content_hash` covers. A change of it in the CRM is pushed
  to Metakocka; a change of it made *in Metakocka* is not copied to the CRM by itself: it is a
  conflict with the owner and goes through the organization's conflict policy
  (`sync_pipeline.domain.conflicts`), like an edit on both sides.
- Metakocka-owned fields are not in the content hash (so writing them never makes a document
  look changed, and nothing echoes). They flow by direct comparison: when Metakocka's value
  differs from the CRM's, only those CRM columns are written (`crm_fields` in the plan); the
  CRM's own edit of such a column is put back to Metakocka's value on the next run, and
  Metakocka's value is never replaced by a push from the CRM.

`docs/field-ownership.md` is the table for operators; `FIELD_OWNERSHIP` is the same table for code
(a test keeps the two in step).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document
from sync_pipeline.domain.plan import ACTIONS, CHANGED_IN_METAKOCKA, CONFLICT, UPDATE_IN_CRM
from sync_pipeline.domain.summary import was_read

CRM = "crm"
METAKOCKA = "metakocka"


@dataclass(frozen=True)
class OwnedField:
    field: str
    """Canonical name (`SalesDocument` attribute, or a group of them)."""
    owner: str
    crm: str
    """Where the CRM keeps it."""
    metakocka: str
    """Where Metakocka keeps it."""


FIELD_OWNERSHIP = (
    OwnedField("document_number", CRM, "document_number", "count_code (on create only)"),
    OwnedField("document_type", CRM, "document_type", "doc_type"),
    OwnedField("document_date", CRM, "document_date", "doc_date"),
    OwnedField("due_date", CRM, "due_date", "duo_payment"),
    OwnedField("currency", CRM, "currency", "currency_code"),
    OwnedField("notes", CRM, "notes", "notes"),
    OwnedField("customer", CRM, "customer_* columns", "partner"),
    OwnedField("lines", CRM, "sales_document_items", "product_list"),
    OwnedField("discount", CRM, "metadata.metakocka.discount", "discount_percent / discount_value"),
    OwnedField("metakocka_count_code", METAKOCKA, "document_number (born in MK)", "count_code"),
    OwnedField("status", METAKOCKA, "status", "status_code / status_desc, sum_paid"),
)  # fmt: skip

OWNED_BY_CRM = "changed in Metakocka, but the CRM owns this content"
ERP_FIELDS_CHANGED = "Metakocka changed fields it owns"


def erp_fields_for_crm(
    crm: SalesDocument, metakocka: SalesDocument, *, born_in_metakocka: bool
) -> dict[str, str]:
    """The CRM columns to set so the CRM shows Metakocka's values of the fields Metakocka owns.

    A Metakocka status the CRM has no word for (None) leaves the CRM's status alone; the
    Metakocka number becomes the CRM's number only for a document born in Metakocka (a document
    the CRM created keeps its own number; Metakocka's is in sync_status.metakocka_count_code).
    """
    fields = {}
    if metakocka.status is not None and metakocka.status != crm.status:
        fields["status"] = metakocka.status
    code = metakocka.metakocka_count_code
    if born_in_metakocka and code and code != crm.document_number:
        fields["document_number"] = code
    return fields


def apply_ownership(plan: pd.DataFrame, organization_id: str) -> pd.DataFrame:
    """Bend the plan to field ownership; adds the `crm_fields` column (dict or None per row).

    - a change of CRM-owned content made in Metakocka becomes a `conflict` (never a silent copy);
    - a pair with no content change whose Metakocka-owned fields differ from the CRM's becomes
      an `update_in_crm` of just those fields.
    A pair whose content changed in the CRM gets its Metakocka-owned fields on the next run.
    """
    plan = plan.copy(deep=False)  # whole columns replaced: as in `apply_conflict_policy`
    crm_fields = np.full(len(plan), None, dtype=object)
    if plan.empty or "crm_document" not in plan or "metakocka_document" not in plan:
        plan["crm_fields"] = crm_fields
        return plan
    action = plan["action"].to_numpy(dtype=object).copy()
    reason = plan["reason"].to_numpy(dtype=object).copy()

    from_metakocka = (action == "update_in_crm") & (reason == CHANGED_IN_METAKOCKA)
    action[from_metakocka] = ACTIONS[CONFLICT]
    reason[from_metakocka] = OWNED_BY_CRM

    crm_docs = plan["crm_document"].to_numpy(dtype=object)
    mk_docs = plan["metakocka_document"].to_numpy(dtype=object)
    for i in np.flatnonzero(action == "unchanged"):
        crm, mk = crm_docs[i], mk_docs[i]
        if not (was_read(crm) and was_read(mk)):
            continue
        if mk.status in (None, crm.status) and mk.metakocka_count_code in (
            None,
            crm.document_number,
        ):
            continue  # the common case, decided without hashing an id
        born = crm.crm_document_id == crm_id_for_metakocka_document(
            organization_id, mk.metakocka_id
        )
        fields = erp_fields_for_crm(crm, mk, born_in_metakocka=born)
        if fields:
            crm_fields[i] = fields
            action[i] = ACTIONS[UPDATE_IN_CRM]
            reason[i] = f"{ERP_FIELDS_CHANGED}: {', '.join(sorted(fields))}"
    plan["action"] = pd.Series(action, index=plan.index, dtype=object)
    plan["reason"] = pd.Series(reason, index=plan.index, dtype=object)
    plan["crm_fields"] = pd.Series(crm_fields, index=plan.index, dtype=object)
    return plan
