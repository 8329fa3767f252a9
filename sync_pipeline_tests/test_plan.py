"""The sync plan: every rule on small frames, properties on random ones, and a large smoke run."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipeline.domain.document import crm_id_for_metakocka_document, crm_id_to_external_ref
from sync_pipeline.domain.plan import ACTIONS, PLAN_COLUMNS, build_sync_plan, derived_crm_ids

ORG = "0b7f6a36-7b43-4d8b-9a43-1f2a3c4d5e6f"
EARLY = pd.Timestamp("2024-01-01T10:00:00Z")
LATE = pd.Timestamp("2024-01-02T10:00:00Z")


def crm(*docs) -> pd.DataFrame:
    """(crm_document_id, content_hash[, updated_at])"""
    rows = [(d[0], d[1], d[2] if len(d) > 2 else EARLY) for d in docs]
    frame = pd.DataFrame(rows, columns=["crm_document_id", "content_hash", "updated_at"])
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)
    return frame


def mk(*docs) -> pd.DataFrame:
    """(metakocka_id, crm_document_id claimed by buyer_order or None, content_hash[, updated_at])"""
    rows = [(d[0], d[1], d[2], d[3] if len(d) > 3 else EARLY) for d in docs]
    frame = pd.DataFrame(
        rows, columns=["metakocka_id", "crm_document_id", "content_hash", "updated_at"]
    )
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)
    return frame


def links(*rows) -> pd.DataFrame:
    """(crm_document_id, metakocka_id or None, content_hash or None)"""
    return pd.DataFrame(list(rows), columns=["crm_document_id", "metakocka_id", "content_hash"])


def plan_of(crm_frame=None, mk_frame=None, link_frame=None) -> pd.DataFrame:
    return build_sync_plan(
        crm_frame if crm_frame is not None else crm(),
        mk_frame if mk_frame is not None else mk(),
        link_frame if link_frame is not None else links(),
        ORG,
    )


def only(plan: pd.DataFrame, **key) -> pd.Series:
    (column, value), *_ = key.items()
    rows = plan.loc[plan[column] == value]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# -- linked pairs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crm_hash", "mk_hash", "link_hash", "action", "refresh"),
    [
        ("h0", "h0", "h0", "unchanged", False),
        ("h1", "h0", "h0", "update_in_metakocka", False),
        ("h0", "h1", "h0", "update_in_crm", False),
        ("h1", "h1", "h0", "unchanged", True),
        ("h1", "h2", "h0", "conflict", False),
        ("h1", "h1", None, "unchanged", True),
        ("h1", "h2", None, "conflict", False),
    ],
)
def test_linked_pair(crm_hash, mk_hash, link_hash, action, refresh):
    plan = plan_of(crm(("c1", crm_hash)), mk(("m1", "c1", mk_hash)), links(("c1", "m1", link_hash)))
    assert len(plan) == 1
    row = plan.iloc[0]
    assert (row.action, row.crm_document_id, row.metakocka_id) == (action, "c1", "m1")
    assert (row.crm_hash, row.metakocka_hash, row.link_hash) == (crm_hash, mk_hash, link_hash)
    assert row.refresh_link == refresh
    assert not row.link_missing


def test_converged_pair_says_so():
    plan = plan_of(crm(("c1", "h1")), mk(("m1", "c1", "h1")), links(("c1", "m1", "h0")))
    assert "same content" in plan.iloc[0].reason


def test_linked_pair_with_a_side_gone():
    plan = plan_of(
        crm(("c1", "h0"), ("c3", "h0")),
        mk(("m2", None, "h0"), ("m3", "c3", "h0")),
        links(("c1", "m1", "h0"), ("c2", "m2", "h0"), ("c3", "m3", "h0"), ("c4", "m4", "h0")),
    )
    assert only(plan, crm_document_id="c1").action == "deleted_in_metakocka"
    assert only(plan, crm_document_id="c1").metakocka_id == "m1"
    assert only(plan, metakocka_id="m2").action == "deleted_in_crm"
    assert only(plan, metakocka_id="m2").crm_document_id == "c2"
    assert only(plan, crm_document_id="c3").action == "unchanged"
    assert "c4" not in set(plan.crm_document_id)  # both sides gone: nothing to do
    assert len(plan) == 3


# -- unlinked CRM documents ----------------------------------------------------------------


def test_unlinked_crm_document_is_created():
    plan = plan_of(crm(("c1", "h0")))
    row = only(plan, crm_document_id="c1")
    assert row.action == "create_in_metakocka" and row.metakocka_id is None
    assert not row.link_missing


def test_unfinished_create_is_created_again():
    plan = plan_of(crm(("c1", "h0")), link_frame=links(("c1", None, None)))
    assert only(plan, crm_document_id="c1").action == "create_in_metakocka"


def test_adopts_a_pair_found_by_buyer_order():
    plan = plan_of(crm(("c1", "h0")), mk(("m1", "c1", "h0")))
    row = only(plan, crm_document_id="c1")
    assert (row.action, row.metakocka_id, row.link_missing) == ("unchanged", "m1", True)


def test_adopts_the_result_of_an_unfinished_create():
    plan = plan_of(crm(("c1", "h0")), mk(("m1", "c1", "h0")), links(("c1", None, None)))
    row = only(plan, crm_document_id="c1")
    assert (row.action, row.metakocka_id, row.link_missing) == ("unchanged", "m1", True)


def test_adopts_a_pair_found_by_the_derived_crm_id():
    crm_id = crm_id_for_metakocka_document(ORG, "m1")
    plan = plan_of(crm((crm_id, "h0")), mk(("m1", None, "h0")))
    row = only(plan, metakocka_id="m1")
    assert (row.action, row.crm_document_id, row.link_missing) == ("unchanged", crm_id, True)
    assert len(plan) == 1


@pytest.mark.parametrize(
    ("crm_time", "mk_time", "action"),
    [
        (LATE, EARLY, "update_in_metakocka"),
        (EARLY, LATE, "update_in_crm"),
        (EARLY, EARLY, "conflict"),
        (pd.NaT, EARLY, "conflict"),
    ],
)
def test_adopted_pair_newer_side_wins(crm_time, mk_time, action):
    plan = plan_of(crm(("c1", "h1", crm_time)), mk(("m1", "c1", "h2", mk_time)))
    row = only(plan, crm_document_id="c1")
    assert (row.action, row.metakocka_id, row.link_missing) == (action, "m1", True)
    if action != "conflict":
        assert row.reason == "adopted existing pair, newer side wins"


# -- unlinked Metakocka documents ----------------------------------------------------------


def test_unlinked_metakocka_document_is_created_with_its_derived_id():
    plan = plan_of(mk_frame=mk(("m1", None, "h0")))
    row = only(plan, metakocka_id="m1")
    assert row.action == "create_in_crm"
    assert row.crm_document_id == crm_id_for_metakocka_document(ORG, "m1")


def test_metakocka_copy_of_a_deleted_crm_document():
    plan = plan_of(mk_frame=mk(("m1", "c9", "h0")))
    row = only(plan, metakocka_id="m1")
    assert (row.action, row.crm_document_id) == ("deleted_in_crm", "c9")


def test_metakocka_result_of_a_create_whose_crm_document_was_deleted():
    plan = plan_of(mk_frame=mk(("m1", "c9", "h0")), link_frame=links(("c9", None, None)))
    assert only(plan, metakocka_id="m1").action == "deleted_in_crm"


# -- ambiguity: never create ---------------------------------------------------------------


def test_two_metakocka_documents_claiming_one_crm_document():
    plan = plan_of(crm(("c1", "h0")), mk(("m1", "c1", "h0"), ("m2", "c1", "h0")))
    assert set(plan.action) == {"conflict"}
    assert len(plan) == 3
    assert only(plan, crm_document_id="c1").metakocka_id is None
    assert "claimed by 2" in only(plan, crm_document_id="c1").reason
    assert "c1" in only(plan, metakocka_id="m2").reason


def test_a_metakocka_copy_of_a_linked_document():
    plan = plan_of(
        crm(("c1", "h0")),
        mk(("m1", "c1", "h0"), ("m2", "c1", "h0")),
        links(("c1", "m1", "h0")),
    )
    assert only(plan, crm_document_id="c1").action == "unchanged"
    copy = only(plan, metakocka_id="m2")
    assert copy.action == "conflict" and copy.crm_document_id is None
    assert "linked to another Metakocka document" in copy.reason


def test_a_metakocka_document_pointing_two_ways():
    derived = crm_id_for_metakocka_document(ORG, "m1")
    plan = plan_of(crm(("c1", "h0"), (derived, "h0")), mk(("m1", "c1", "h0")))
    assert len(plan) == 3 and set(plan.action) == {"conflict"}


def test_a_linked_metakocka_document_naming_another_crm_document():
    plan = plan_of(
        crm(("c1", "h0"), ("c2", "h0")), mk(("m1", "c2", "h0")), links(("c1", "m1", "h0"))
    )
    assert only(plan, crm_document_id="c1").action == "unchanged"
    assert only(plan, crm_document_id="c2").action == "conflict"


def test_two_metakocka_documents_claiming_one_deleted_crm_document():
    plan = plan_of(mk_frame=mk(("m1", "c9", "h0"), ("m2", "c9", "h0")))
    assert set(plan.action) == {"conflict"} and len(plan) == 2


# -- shape ---------------------------------------------------------------------------------


@given(st.lists(st.text(min_size=1, max_size=14), max_size=20), st.uuids())
def test_bulk_derived_ids_equal_the_single_ones(mk_ids, org):
    bulk = derived_crm_ids(str(org), np.array(mk_ids, dtype=object))
    assert list(bulk) == [crm_id_for_metakocka_document(str(org), m) for m in mk_ids]


def test_documents_travel_with_the_plan():
    crm_frame = crm(("c1", "h1"), ("c2", "h0"))
    crm_frame["document"] = ["crm doc 1", "crm doc 2"]
    mk_frame = mk(("m1", "c1", "h0"), ("m3", None, "h0"))
    mk_frame["document"] = ["mk doc 1", "mk doc 3"]
    plan = plan_of(crm_frame, mk_frame, links(("c1", "m1", "h0")))
    assert list(plan.columns) == [*PLAN_COLUMNS, "crm_document", "metakocka_document"]
    pair = only(plan, crm_document_id="c1")
    assert (pair.crm_document, pair.metakocka_document) == ("crm doc 1", "mk doc 1")
    created = only(plan, crm_document_id="c2")
    assert (created.crm_document, created.metakocka_document) == ("crm doc 2", None)
    assert only(plan, metakocka_id="m3").crm_document is None


def test_empty_inputs_give_an_empty_plan():
    plan = plan_of()
    assert plan.empty and list(plan.columns) == list(PLAN_COLUMNS)
    assert plan.link_missing.dtype == bool


def test_ids_must_be_unique():
    with pytest.raises(ValueError, match="crm_document_id must be unique"):
        plan_of(crm(("c1", "h0"), ("c1", "h1")))


def test_missing_values_from_a_database_read_are_null():
    link_frame = links(("c1", "m1", np.nan), ("c2", np.nan, None))
    plan = plan_of(crm(("c1", "h0"), ("c2", "h0")), mk(("m1", np.nan, "h0")), link_frame)
    assert only(plan, crm_document_id="c1").action == "unchanged"  # converged, link refreshed
    assert only(plan, crm_document_id="c1").refresh_link
    assert only(plan, crm_document_id="c2").action == "create_in_metakocka"


# -- properties ----------------------------------------------------------------------------

MK_IDS = [f"m{i}" for i in range(6)]
DERIVED = {m: crm_id_for_metakocka_document(ORG, m) for m in MK_IDS}
CRM_POOL = [f"c{i}" for i in range(6)] + list(DERIVED.values())[:3]
HASHES = st.sampled_from(["h1", "h2", "h3"])
TIMES = st.sampled_from([EARLY, LATE, pd.NaT])


@st.composite
def universes(draw):
    crm_ids = draw(st.lists(st.sampled_from(CRM_POOL), unique=True))
    mk_ids = draw(st.lists(st.sampled_from(MK_IDS), unique=True))
    claims = st.none() | st.sampled_from(CRM_POOL + ["ghost1", "ghost2"])
    crm_frame = crm(*[(c, draw(HASHES), draw(TIMES)) for c in crm_ids])
    mk_frame = mk(*[(m, draw(claims), draw(HASHES), draw(TIMES)) for m in mk_ids])
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CRM_POOL + ["ghost1"]),
                st.none() | st.sampled_from(MK_IDS),
                st.none() | HASHES,
            )
        )
    )
    link_frame = links(*pairs).drop_duplicates("crm_document_id")
    link_frame = link_frame.loc[
        link_frame.metakocka_id.isna() | ~link_frame.metakocka_id.duplicated()
    ]
    return crm_frame, mk_frame, link_frame


@settings(max_examples=400, deadline=None)
@given(universes())
def test_every_document_appears_exactly_once_and_no_match_is_created(universe):
    crm_frame, mk_frame, link_frame = universe
    plan = build_sync_plan(crm_frame, mk_frame, link_frame, ORG)

    assert set(plan.action) <= set(ACTIONS)
    for crm_id in crm_frame.crm_document_id:
        assert (plan.crm_document_id == crm_id).sum() == 1, crm_id
    for mk_id in mk_frame.metakocka_id:
        assert (plan.metakocka_id == mk_id).sum() == 1, mk_id

    claimed = set(mk_frame.crm_document_id.dropna())
    linked_mk = set(link_frame.metakocka_id.dropna())
    derived = {DERIVED[m] for m in mk_frame.metakocka_id if m not in linked_mk}
    for row in plan.itertuples():
        if row.action == "create_in_metakocka":
            assert row.crm_document_id not in claimed | derived
        if row.action == "create_in_crm":
            claim = mk_frame.set_index("metakocka_id").crm_document_id[row.metakocka_id]
            assert pd.isna(claim)
            assert row.crm_document_id == DERIVED[row.metakocka_id]
            assert row.crm_document_id not in set(crm_frame.crm_document_id)
        if row.link_missing:
            assert row.metakocka_id not in linked_mk
            assert row.crm_document_id in set(crm_frame.crm_document_id)
            assert row.metakocka_id in set(mk_frame.metakocka_id)
        if row.action == "unchanged" and row.crm_hash is not None:
            assert row.crm_hash == row.metakocka_hash


# -- scale ---------------------------------------------------------------------------------


def test_smoke_200k_mixed():
    """A realistic mix at 200,000 documents per side (no timing assertion: machines differ)."""
    n = 200_000
    rng = np.random.default_rng(7)
    crm_ids = np.array([f"00000000-0000-4000-8000-{i:012d}" for i in range(n)], dtype=object)
    mk_ids = np.array([str(400_000_000_000 + i) for i in range(n)], dtype=object)
    hashes = np.array([f"{i:032x}" for i in range(n)], dtype=object)
    times = EARLY + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")

    linked = n * 8 // 10  # 80% linked, of which some changed on either side
    crm_hash, mk_hash = hashes.copy(), hashes.copy()
    crm_hash[: linked // 20] = "changed in crm"
    mk_hash[linked // 20 : linked // 10] = "changed in mk"
    claims = np.full(n, None, dtype=object)
    claims[:linked] = crm_ids[:linked]
    claims[linked : linked + n // 20] = crm_ids[linked : linked + n // 20]  # adoptable pairs
    crm_frame = pd.DataFrame(
        {"crm_document_id": crm_ids, "content_hash": crm_hash, "updated_at": times}
    )
    mk_frame = pd.DataFrame(
        {"metakocka_id": mk_ids, "crm_document_id": claims, "content_hash": mk_hash,
         "updated_at": times}
    )  # fmt: skip
    link_frame = pd.DataFrame(
        {"crm_document_id": crm_ids[:linked], "metakocka_id": mk_ids[:linked],
         "content_hash": hashes[:linked]}
    )  # fmt: skip
    plan = build_sync_plan(crm_frame, mk_frame, link_frame, ORG)

    counts = plan.action.value_counts().to_dict()
    assert counts["update_in_metakocka"] == linked // 20
    assert counts["update_in_crm"] == linked // 20
    assert counts["unchanged"] == linked - linked // 10 + n // 20
    assert plan.link_missing.sum() == n // 20
    rest = n - linked - n // 20
    assert counts["create_in_metakocka"] == rest
    assert counts["create_in_crm"] == rest
    assert len(plan) == linked + n // 20 + 2 * rest


def test_external_ref_claims_match_the_encoding():
    """The metakocka frame's crm_document_id is what buyer_order decodes to: the full uuid."""
    crm_id = "3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f"
    assert crm_id_to_external_ref(crm_id).startswith("FC")
    plan = plan_of(crm((crm_id, "h0")), mk(("m1", crm_id, "h0")))
    assert only(plan, crm_document_id=crm_id).link_missing
