"""Deletions: a linked document missing on one side (`deleted_in_crm` / `deleted_in_metakocka`).

By default a deletion is only reported (status, and one open `not_found` error per document).
An organization that opts in with `propagate_deletes` has the counterpart deleted and the link
dropped, after the absence is confirmed by a direct look-up, so a document that merely went
missing from an extraction (or was quarantined as invalid: such pairs are `invalid`, never
`deleted_*`) is never deleted on the other side.

Metakocka's API deletes sales orders only (`delete_document`); the counterpart of any other type
is left in place with an open `rejected` error asking for a manual deletion.
"""

import traceback
from datetime import UTC, datetime

import pandas as pd

from sync_pipeline.adapters.errors import NotFoundError, SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.directions import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.export.outcomes import FAILED, OK, SKIPPED, PushOutcome

DELETED_IN_CRM = "deleted_in_crm"
DELETED_IN_METAKOCKA = "deleted_in_metakocka"
DELETABLE_IN_METAKOCKA = ("sales_order",)


def deleted_rows(plan: pd.DataFrame) -> pd.DataFrame:
    return plan.loc[plan["action"].isin([DELETED_IN_CRM, DELETED_IN_METAKOCKA])]


def propagate_deletions(
    plan: pd.DataFrame,
    *,
    crm: CrmClient,
    metakocka: MetakockaClient,
    store: SyncStore,
    organization_id: str,
) -> list[PushOutcome]:
    """Delete the counterpart of every document the plan found deleted on one side.

    Outcomes: `ok` (deleted, link dropped), `skipped` (Metakocka cannot delete that type, or the
    document turned out to be present after all), `failed` (the API refused or broke).
    """
    rows = deleted_rows(plan)
    links = store.links.frame(organization_id)
    doc_type_by_mk = dict(zip(links["metakocka_id"], links["metakocka_doc_type"], strict=True))
    outcomes = []
    for row in rows.itertuples(index=False):
        crm_id, mk_id = text_or_none(row.crm_document_id), text_or_none(row.metakocka_id)
        if row.action == DELETED_IN_CRM:
            doc = getattr(row, "metakocka_document", None)
            doc_type = getattr(doc, "metakocka_doc_type", None) or doc_type_by_mk.get(mk_id)
            step = _delete_in_metakocka
        else:
            doc_type = doc_type_by_mk.get(mk_id)
            step = _delete_in_crm
        attempted_at = datetime.now(UTC)
        try:
            result, message = step(crm, metakocka, organization_id, crm_id, mk_id, doc_type)
        except SyncError as exc:
            result, message, error_type, trace = FAILED, str(exc), exc.error_type, None
        except Exception as exc:  # a bug or an unexpected answer: record it, go on
            result, message = FAILED, f"{type(exc).__name__}: {exc}"
            error_type, trace = "internal", traceback.format_exc()
        else:
            error_type = "rejected" if result == SKIPPED else None
            trace = None
        if result == OK:
            # Forget the pair: both documents are gone, nothing is left to sync.
            store.links.delete(organization_id, crm_document_id=crm_id, metakocka_id=mk_id)
        outcomes.append(
            PushOutcome(
                f"delete_in_{'metakocka' if row.action == DELETED_IN_CRM else 'crm'}",
                CRM_TO_METAKOCKA if row.action == DELETED_IN_CRM else METAKOCKA_TO_CRM,
                result,
                crm_id,
                mk_id,
                error_type=error_type,
                message=message,
                attempted_at=attempted_at,
                stack_trace=trace,
            )
        )
    return outcomes


def _delete_in_metakocka(crm, metakocka, organization_id, crm_id, mk_id, doc_type):
    if crm_id and crm.get_document(organization_id, crm_id) is not None:
        return SKIPPED, f"not deleted: CRM document {crm_id} exists after all"
    if doc_type not in DELETABLE_IN_METAKOCKA:
        return SKIPPED, (
            f"deleted in the CRM; Metakocka's API cannot delete a {doc_type or 'document'} "
            f"(only {', '.join(DELETABLE_IN_METAKOCKA)}): delete {mk_id} in Metakocka by hand"
        )
    metakocka.delete_document(doc_type, mk_id)
    return OK, "deleted in the CRM, so deleted in Metakocka too (propagate_deletes)"


def _delete_in_crm(crm, metakocka, organization_id, crm_id, mk_id, doc_type):
    if not doc_type:
        return SKIPPED, f"not deleted: Metakocka document type of {mk_id} unknown, cannot confirm"
    try:
        metakocka.get_document(doc_type, mk_id)
    except NotFoundError:
        pass
    else:
        return SKIPPED, f"not deleted: Metakocka document {mk_id} exists after all"
    crm.delete_document(organization_id, crm_id)
    return OK, "deleted in Metakocka, so deleted in the CRM too (propagate_deletes)"


def deletion_error_rows(
    plan: pd.DataFrame,
    outcomes: list[PushOutcome],
    *,
    organization_id: str,
    run_id: str | None,
    open_errors: pd.DataFrame,
    requested_by: str | None,
) -> list[dict]:
    """One open error per deleted document and reason: `not_found` while a deletion is only
    reported, the outcome's error when propagating it failed or was refused."""
    open_keys = set()
    if open_errors is not None and not open_errors.empty:
        open_keys = {
            (r.error_type, text_or_none(r.crm_document_id), text_or_none(r.metakocka_id), r.message)
            for r in open_errors.itertuples(index=False)
        }
    by_pair = {(o.crm_document_id, o.metakocka_id): o for o in outcomes}
    rows = []
    for row in deleted_rows(plan).itertuples(index=False):
        crm_id, mk_id = text_or_none(row.crm_document_id), text_or_none(row.metakocka_id)
        outcome = by_pair.get((crm_id, mk_id))
        if outcome is not None and outcome.result == OK:
            continue
        if outcome is None:
            error_type, message = (
                "not_found",
                f"{row.reason}; not propagated (propagate_deletes off)",
            )
        else:
            error_type, message = outcome.error_type or "internal", outcome.message or "failed"
        if (error_type, crm_id, mk_id, message) in open_keys:
            continue
        rows.append(
            {
                "organization_id": organization_id,
                "run_id": run_id,
                "direction": CRM_TO_METAKOCKA if row.action == DELETED_IN_CRM else METAKOCKA_TO_CRM,
                "crm_document_id": crm_id,
                "metakocka_id": mk_id,
                "error_type": error_type,
                "message": message,
                "details": {"action": row.action},
                "stack_trace": outcome.stack_trace if outcome is not None else None,
                "requested_by": requested_by,
            }
        )
    return rows
