"""The sync database on a real SQLite file and on the real PostgreSQL."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA, LINK_LINKED, document_links

ORG = "00000000-0000-0000-0000-0000000000aa"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    store = SyncStore(url, secrets=["mk_sk_topsecret"])
    store.create_schema()
    yield store
    store.dispose()


def test_database_forbids_a_second_link_for_the_same_document(store):
    store.links.bind(ORG, crm_document_id="c1", metakocka_id="1600200001", content_hash="h1")
    now = sa.func.now()
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            document_links.insert().values(
                organization_id=ORG,
                crm_document_id="c2",
                metakocka_id="1600200001",
                state=LINK_LINKED,
                created_at=now,
                updated_at=now,
            )
        )
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            document_links.insert().values(
                organization_id=ORG,
                crm_document_id="c1",
                metakocka_id="1600200002",
                state=LINK_LINKED,
                created_at=now,
                updated_at=now,
            )
        )


def test_intent_then_bind_is_one_link(store):
    store.links.record_intent(ORG, state=LINK_CREATING_IN_METAKOCKA, crm_document_id="c1")
    store.links.record_intent(ORG, state=LINK_CREATING_IN_METAKOCKA, crm_document_id="c1")  # no-op
    links = store.links.frame(ORG)
    assert len(links) == 1 and links.iloc[0]["state"] == LINK_CREATING_IN_METAKOCKA
    store.links.bind(ORG, crm_document_id="c1", metakocka_id="1600200001", content_hash="h1")
    store.links.bind(ORG, crm_document_id="c1", metakocka_id="1600200001", content_hash="h2")
    links = store.links.frame(ORG)
    assert len(links) == 1
    assert links.iloc[0]["state"] == LINK_LINKED
    assert links.iloc[0]["content_hash"] == "h2"


def test_links_read_with_texts_the_caller_holds_share_those_objects(store):
    """A full sweep's plan reads every link: an id or hash its documents already hold is that
    object, not a copy (`Links.frame`'s `held`); the frame's values are the same either way."""
    for n in (1, 2):
        store.links.bind(ORG, crm_document_id=f"c{n}", metakocka_id=f"16{n}", content_hash=f"h{n}")
    held_id, held_hash = "".join(["c", "1"]), "".join(["h", "1"])  # objects of the caller's own
    columns = ["crm_document_id", "metakocka_id", "content_hash", "state"]
    plain = store.links.frame(ORG, columns)
    shared = store.links.frame(
        ORG,
        columns,
        held={"crm_document_id": {held_id: held_id}, "content_hash": {"h1": held_hash}},
    )
    assert shared.sort_values("crm_document_id").values.tolist() == (
        plain.sort_values("crm_document_id").values.tolist()
    )
    first = shared.loc[shared["crm_document_id"] == "c1"].iloc[0]
    assert first["crm_document_id"] is held_id and first["content_hash"] is held_hash
    other = shared.loc[shared["crm_document_id"] == "c2"].iloc[0]
    assert other["content_hash"] == "h2"


def test_in_sync_names_the_synced_pairs_of_the_organization_or_of_the_ids_asked(store):
    """What an incremental run leaves out as an echo: a confirmed link whose status is synced."""
    for n in (1, 2, 3):
        store.links.bind(ORG, crm_document_id=f"c{n}", metakocka_id=f"16{n}", content_hash=f"h{n}")
    store.links.record_intent(ORG, state=LINK_CREATING_IN_METAKOCKA, crm_document_id="c4")
    now = datetime.now(UTC)
    store.status.upsert(
        ORG,
        [
            {"organization_id": ORG, "crm_document_id": f"c{n}", "metakocka_id": f"16{n}",
             "status": status, "attempts": 0, "updated_at": now}
            for n, status in ((1, "synced"), (2, "synced"), (3, "failed"))
        ]
        + [{"organization_id": ORG, "crm_document_id": "c4", "metakocka_id": None,
            "status": "synced", "attempts": 0, "updated_at": now}],
    )  # fmt: skip
    assert store.links.in_sync(ORG) == {"c1": "h1", "c2": "h2"}
    assert store.links.in_sync(ORG, ["c2", "c3", "c4"]) == {"c2": "h2"}
    assert store.links.in_sync("another organization") == {}


def test_error_rows_are_redacted_and_resolvable(store):
    store.errors.log(
        [
            {
                "organization_id": ORG,
                "error_type": "auth",
                "crm_document_id": "c1",
                "message": 'refused {"secret_key": "mk_sk_topsecret"}',
                "details": {"body": "apikey: mk_sk_topsecret"},
                "stack_trace": "Traceback ... mk_sk_topsecret",
            }
        ]
    )
    errors = store.errors.open_frame(ORG)
    assert len(errors) == 1
    text = str(errors.iloc[0].to_dict())
    assert "mk_sk_topsecret" not in text
    assert store.errors.resolve_for_documents(ORG, crm_document_ids=["c1"], note="fixed") == 1
    assert store.errors.open_frame(ORG).empty


def test_replace_status_rematerialises_one_organization(store):
    row = {
        "organization_id": ORG,
        "crm_document_id": "c1",
        "metakocka_id": None,
        "status": "pending",
        "attempts": 0,
        "updated_at": datetime.now(UTC),
    }
    store.status.replace(ORG, [row])
    store.status.replace("other-org", [{**row, "organization_id": "other-org"}])
    store.status.replace(ORG, [{**row, "status": "synced", "metakocka_id": "1"}])
    mine = store.status.frame(ORG)
    assert list(mine["status"]) == ["synced"]
    assert len(store.status.frame("other-org")) == 1


def test_a_sqlite_sync_database_in_a_folder_that_does_not_exist_yet_is_created(tmp_path):
    """A fresh clone has no `.sync_pipeline/`: whichever process opens the sync database first
    (a sensor tick, a run, the CLI) creates the folder, the file and the tables."""
    url = f"sqlite:///{tmp_path / 'fresh' / 'clone' / 'sync.db'}"
    store = SyncStore(url)
    store.create_schema()
    assert store.status.frame("org-1").empty
    store.dispose()
    assert (tmp_path / "fresh" / "clone" / "sync.db").is_file()
