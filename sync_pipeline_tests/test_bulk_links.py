"""Binding many pairs at once gives the links binding them one by one would."""

from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA, LINK_LINKED

ORG = "00000000-0000-0000-0000-0000000000bb"


def _links(store) -> dict:
    frame = store.links.frame(ORG)
    return {row["crm_document_id"]: row for row in frame.to_dict("records")}


def test_bind_many_inserts_updates_and_keeps_known_values(store, monkeypatch):
    store.links.bind(
        ORG, crm_document_id="c1", metakocka_id="m1", content_hash="old", document_type="x"
    )
    store.links.record_intent(ORG, state=LINK_CREATING_IN_METAKOCKA, crm_document_id="c2")
    tangled = []
    pairs = [
        # the existing link: new hash, its document type kept (None never overwrites)
        {"crm_document_id": "c1", "metakocka_id": "m1", "content_hash": "h1"},
        # an unfinished create: becomes a link to the document found
        {"crm_document_id": "c2", "metakocka_id": "m2", "content_hash": "h2"},
        # new
        {"crm_document_id": "c3", "metakocka_id": "m3", "content_hash": "h3", "document_type": "o"},
    ]
    monkeypatch.setattr(store.links, "bind", lambda *a, **k: tangled.append(k))
    assert store.links.bind_many(ORG, pairs) == 3
    links = _links(store)
    assert {k: (v["metakocka_id"], v["content_hash"], v["state"]) for k, v in links.items()} == {
        "c1": ("m1", "h1", LINK_LINKED),
        "c2": ("m2", "h2", LINK_LINKED),
        "c3": ("m3", "h3", LINK_LINKED),
    }
    assert links["c1"]["document_type"] == "x"
    assert links["c3"]["document_type"] == "o"
    assert all(v["last_synced_at"] is not None for v in links.values())
    assert tangled == []


def test_a_pair_across_two_links_goes_to_the_one_by_one_bind(store, monkeypatch):
    store.links.bind(ORG, crm_document_id="c1", metakocka_id="m1", content_hash="h")
    store.links.bind(ORG, crm_document_id="c2", metakocka_id="m2", content_hash="h")
    tangled = []
    pair = {"crm_document_id": "c1", "metakocka_id": "m2", "content_hash": "h"}
    monkeypatch.setattr(store.links, "bind", lambda org, **k: tangled.append(k))
    store.links.bind_many(ORG, [pair])
    assert [(t["crm_document_id"], t["metakocka_id"]) for t in tangled] == [("c1", "m2")]
