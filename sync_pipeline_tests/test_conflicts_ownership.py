"""Field ownership and conflict policies on small plans (pure: no I/O), and their settings."""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from sync_pipeline.domain.conflicts import (
    Resolution,
    apply_conflict_policy,
    conflict_details,
    field_differences,
)
from sync_pipeline.domain.document import (
    Customer,
    DocumentLine,
    SalesDocument,
    crm_id_for_metakocka_document,
)
from sync_pipeline.domain.frames import documents_frame
from sync_pipeline.domain.ownership import FIELD_OWNERSHIP, OWNED_BY_CRM, apply_ownership
from sync_pipeline.domain.plan import build_sync_plan
from sync_pipeline.settings import Organization, organizations_to_json, parse_organizations

ORG = "0b7f6a36-7b43-4d8b-9a43-1f2a3c4d5e6f"
CRM_ID = "3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f"
MK_ID = "1600200001"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def doc(**changes) -> SalesDocument:
    base = SalesDocument(
        organization_id=ORG,
        document_type="order",
        document_date=date(2026, 11, 1),
        customer=Customer(name="ACME d.o.o.", country="SI"),
        lines=(DocumentLine("Widget", Decimal(2), Decimal("10"), Decimal(22)),),
        notes="first",
        status="sent",
        document_number="SO-1",
        crm_document_id=CRM_ID,
        metakocka_id=None,
        updated_at=T0,
    )
    return replace(base, **changes)


def mk_doc(**changes) -> SalesDocument:
    fields = {"metakocka_id": MK_ID, "document_number": None, "metakocka_count_code": "PP-1"}
    return doc(**fields | changes)


def plan_for(crm_doc, metakocka_doc, *, baseline=None, policy="manual", resolutions=()):
    """The plan of one linked pair whose last sync stored the hash of `baseline`."""
    crm_frame = documents_frame([crm_doc])
    mk_frame = documents_frame([metakocka_doc])
    link_hash = documents_frame([baseline or crm_doc])["content_hash"].iloc[0]
    links = pd.DataFrame(
        [(crm_doc.crm_document_id, metakocka_doc.metakocka_id, link_hash)],
        columns=["crm_document_id", "metakocka_id", "content_hash"],
    )
    plan = build_sync_plan(
        crm_frame[["crm_document_id", "content_hash", "updated_at", "document"]],
        mk_frame[["metakocka_id", "crm_document_id", "content_hash", "updated_at", "document"]],
        links,
        ORG,
    )
    return apply_conflict_policy(apply_ownership(plan, ORG), policy, resolutions)


def only_row(plan):
    assert len(plan) == 1
    return plan.iloc[0]


# -- ownership -----------------------------------------------------------------------------


def test_crm_owned_content_changed_in_the_crm_goes_to_metakocka():
    row = only_row(plan_for(doc(notes="second"), mk_doc(), baseline=doc()))
    assert row.action == "update_in_metakocka"


def test_crm_owned_content_changed_in_metakocka_is_a_conflict_not_a_copy():
    row = only_row(plan_for(doc(), mk_doc(notes="edited in MK"), baseline=doc()))
    assert row.action == "conflict"
    assert row.reason == OWNED_BY_CRM
    assert row.crm_fields is None


def test_metakocka_status_flows_to_the_crm_alone():
    row = only_row(plan_for(doc(status="sent"), mk_doc(status="paid")))
    assert row.action == "update_in_crm"
    assert row.crm_fields == {"status": "paid"}


def test_a_metakocka_status_the_crm_has_no_word_for_changes_nothing():
    row = only_row(plan_for(doc(status="sent"), mk_doc(status=None)))
    assert (row.action, row.crm_fields) == ("unchanged", None)


def test_metakocka_number_becomes_the_crm_number_only_for_documents_born_in_metakocka():
    crm_made = only_row(plan_for(doc(document_number="SO-1"), mk_doc(metakocka_count_code="PP-9")))
    assert (crm_made.action, crm_made.crm_fields) == ("unchanged", None)

    born_id = crm_id_for_metakocka_document(ORG, MK_ID)
    born = only_row(
        plan_for(
            doc(crm_document_id=born_id, document_number="PP-1"),
            mk_doc(crm_document_id=None, metakocka_count_code="PP-9"),
        )
    )
    assert born.action == "update_in_crm"
    assert born.crm_fields == {"document_number": "PP-9"}


def test_field_ownership_table_is_documented():
    text = (Path(__file__).parents[1] / "docs" / "field-ownership.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| (CRM|Metakocka) \|", text, flags=re.MULTILINE)
    owners = {field: owner for field, owner in rows}
    expected = {f.field: "CRM" if f.owner == "crm" else "Metakocka" for f in FIELD_OWNERSHIP}
    assert owners == expected


# -- conflict policies ---------------------------------------------------------------------


def both_changed(crm_at: datetime, mk_at: datetime, **kwargs):
    return only_row(
        plan_for(
            doc(notes="crm edit", updated_at=crm_at),
            mk_doc(notes="mk edit", updated_at=mk_at),
            baseline=doc(),
            **kwargs,
        )
    )


@pytest.mark.parametrize(
    ("policy", "crm_at", "mk_at", "action"),
    [
        ("manual", T0, T0 + timedelta(hours=1), "conflict"),
        ("crm_wins", T0, T0 + timedelta(hours=1), "update_in_metakocka"),
        ("metakocka_wins", T0 + timedelta(hours=1), T0, "update_in_crm"),
        ("newest_wins", T0 + timedelta(hours=1), T0, "update_in_metakocka"),
        ("newest_wins", T0, T0 + timedelta(hours=1), "update_in_crm"),
        ("newest_wins", T0, T0, "conflict"),
    ],
)
def test_each_policy_on_an_edit_on_both_sides(policy, crm_at, mk_at, action):
    row = both_changed(crm_at, mk_at, policy=policy)
    assert row.action == action
    assert row.conflict_policy == policy
    if action != "conflict":
        assert f"{policy}:" in row.reason


@pytest.mark.parametrize("step", ["ownership", "policy"])
def test_ownership_and_the_policy_change_rows_in_a_plan_of_their_own(step):
    """Both copy the plan shallowly (docs/performance.md): the frame they were given is as it
    was after they have changed one of its rows."""
    if step == "ownership":  # a Metakocka edit of CRM-owned content: a conflict
        crm, mk = doc(), mk_doc(notes="mk edit")
    else:  # an edit on both sides, the CRM's the newer
        crm, mk = doc(notes="crm", updated_at=T0 + timedelta(hours=1)), mk_doc(notes="mk")
    given = build_sync_plan(
        documents_frame([crm])[["crm_document_id", "content_hash", "updated_at", "document"]],
        documents_frame([mk])[
            ["metakocka_id", "crm_document_id", "content_hash", "updated_at", "document"]
        ],
        pd.DataFrame(
            [(CRM_ID, MK_ID, documents_frame([doc()])["content_hash"].iloc[0])],
            columns=["crm_document_id", "metakocka_id", "content_hash"],
        ),
        ORG,
    )
    if step == "policy":
        given = apply_ownership(given, ORG)
    before = given.copy()
    after = (
        apply_ownership(given, ORG)
        if step == "ownership"
        else apply_conflict_policy(given, "newest_wins")
    )
    assert only_row(after).action != only_row(before).action
    pd.testing.assert_frame_equal(given, before)


def test_an_operator_resolution_wins_over_the_policy_and_is_named():
    resolution = Resolution(7, CRM_ID, MK_ID, "metakocka", "cli:ana")
    row = both_changed(T0, T0, policy="crm_wins", resolutions=[resolution])
    assert row.action == "update_in_crm"
    assert row.conflict_resolution_id == 7
    assert "resolved by cli:ana" in row.reason


def test_a_resolution_of_another_pair_changes_nothing():
    resolution = Resolution(7, CRM_ID, "999", "metakocka")
    row = both_changed(T0, T0, resolutions=[resolution])
    assert (row.action, row.conflict_resolution_id) == ("conflict", None)


def test_an_ambiguous_match_is_never_settled_by_a_policy():
    """Two Metakocka documents claim one CRM document: not a content conflict."""
    plan = build_sync_plan(
        pd.DataFrame(
            {"crm_document_id": [], "content_hash": [], "updated_at": pd.to_datetime([], utc=True)}
        ),
        pd.DataFrame(
            {
                "metakocka_id": ["m1", "m2"],
                "crm_document_id": [CRM_ID, CRM_ID],
                "content_hash": ["a", "b"],
                "updated_at": pd.to_datetime([T0, T0], utc=True),
                "document": [mk_doc(metakocka_id="m1"), mk_doc(metakocka_id="m2")],
            }
        ),
        pd.DataFrame(columns=["crm_document_id", "metakocka_id", "content_hash"]),
        ORG,
    )
    plan["crm_document"] = None
    settled = apply_conflict_policy(plan, "metakocka_wins")
    assert set(settled["action"]) == {"conflict"}


def test_the_difference_of_two_versions_field_by_field():
    crm_doc = doc(notes="a", lines=(DocumentLine("Widget", Decimal("2.00"), Decimal(10), 22),))
    mk_version = mk_doc(
        notes="b",
        customer=Customer(name="ACME d.o.o.", country=None),  # SI by default: no difference
        lines=(
            DocumentLine("Widget", Decimal(3), Decimal(10), Decimal(22)),
            DocumentLine("Extra", Decimal(1), Decimal(5), Decimal(22)),
        ),
    )
    differences = {
        d["field"]: (d["crm"], d["metakocka"]) for d in field_differences(crm_doc, mk_version)
    }
    assert differences == {
        "notes": ("a", "b"),
        "lines": ("1", "2"),
        "lines[1].quantity": ("2", "3"),
        "lines[2].description": (None, "Extra"),
        "lines[2].quantity": (None, "1"),
        "lines[2].unit_price": (None, "5"),
        "lines[2].discount_percent": (None, "0"),
        "lines[2].tax_rate": (None, "22"),
        "lines[2].unit": (None, "kos"),
    }
    details = conflict_details(crm_doc, mk_version)
    assert details["crm_updated_at"] == T0.isoformat()
    assert conflict_details(crm_doc, None) == {}


# -- settings ------------------------------------------------------------------------------


def test_organizations_carry_policy_and_propagate_deletes():
    orgs = parse_organizations(
        '[{"id": "a", "metakocka_company_id": "1", "conflict_policy": "newest_wins",'
        ' "propagate_deletes": true}, {"id": "b", "metakocka_company_id": "2"}]'
    )
    assert [(o.conflict_policy, o.propagate_deletes) for o in orgs] == [
        ("newest_wins", True),
        ("manual", False),
    ]
    assert parse_organizations(organizations_to_json(orgs)) == orgs


def test_an_unknown_conflict_policy_is_refused():
    with pytest.raises(ValueError, match="conflict_policy must be one of"):
        Organization("a", "A", "1", conflict_policy="last_writer")
