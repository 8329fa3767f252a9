"""Document claims on a real database (SQLite and PostgreSQL): exclusive, kept alive by their
owner's heartbeat, lapsing when the owner stops, and kept as unfinished writes when abandoned."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipeline.store.claims import Claims, DocumentClaims
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import sync_claims

from .faultlab import wait_for

ORG = "00000000-0000-4000-8000-000000000001"
DOC = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'sync.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = SyncStore(url)
    store.create_schema()
    yield store.engine
    store.dispose()


def age(engine, seconds: float) -> None:
    """Pretend every claim was last refreshed `seconds` ago (no waiting in tests)."""
    with engine.begin() as conn:
        conn.execute(
            sync_claims.update().values(claimed_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def test_a_claim_is_exclusive_until_released(engine):
    first = DocumentClaims(engine, ORG, owner="run-a", ttl_s=60)
    second = DocumentClaims(engine, ORG, owner="run-b", ttl_s=60)
    assert first.try_claim(DOC, "create_in_metakocka") is None
    holder = second.try_claim(DOC, "create_in_metakocka")
    assert holder is not None and holder.claimed_by == "run-a"
    assert first.try_claim(DOC) is None  # its own claim: taken again
    first.release(DOC)
    assert second.try_claim(DOC) is None


def test_many_claimants_at_once_exactly_one_wins(engine):
    owners = [DocumentClaims(engine, ORG, owner=f"run-{n}", ttl_s=60) for n in range(8)]
    barrier = threading.Barrier(len(owners))
    won = []

    def claim(owner):
        barrier.wait()
        if owner.try_claim(DOC) is None:
            won.append(owner.owner)

    threads = [threading.Thread(target=claim, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_a_stale_claim_is_taken_over_and_a_live_one_is_kept_by_its_heartbeat(engine):
    dead = DocumentClaims(engine, ORG, owner="dead-run", ttl_s=30)
    assert dead.try_claim(DOC, "update_in_crm") is None
    age(engine, 10)
    assert DocumentClaims(engine, ORG, owner="next", ttl_s=30).try_claim(DOC) is not None
    age(engine, 31)  # no heartbeat for longer than the TTL: the owner is gone
    assert DocumentClaims(engine, ORG, owner="next", ttl_s=30).try_claim(DOC) is None

    with DocumentClaims(engine, ORG, owner="alive", ttl_s=5) as alive:
        assert alive.try_claim("doc-2") is None
        age(engine, 1000)  # stale now; the owner's heartbeat (every 1.25 s) must refresh it
        assert wait_for(lambda: fresh(engine, "alive"), timeout_s=30)
        assert DocumentClaims(engine, ORG, owner="other", ttl_s=5).try_claim("doc-2")
    assert not [c for c in Claims(engine).held(ORG) if c["claimed_by"] == "alive"]


def fresh(engine, owner: str) -> bool:
    now = datetime.now(UTC)
    return all(
        now - claim["claimed_at"] < timedelta(seconds=2)
        for claim in Claims(engine).held(ORG)
        if claim["claimed_by"] == owner
    )


def test_an_abandoned_write_stays_as_an_unfinished_write_for_the_next_run(engine):
    with DocumentClaims(engine, ORG, owner="failed-run", ttl_s=60) as failed:
        assert failed.try_claim(DOC, "update_in_crm") is None
        failed.abandon(DOC)
    (claim,) = Claims(engine).held(ORG)  # release_all on exit left it alone
    assert claim["claimed_by"].startswith("unfinished:")
    later = DocumentClaims(engine, ORG, owner="later-run", ttl_s=60)
    assert later.unfinished_writes(["update_in_crm", "create_in_crm"]) == {DOC: "update_in_crm"}
    assert later.unfinished_writes(["create_in_metakocka"]) == {}
    assert later.try_claim(DOC, "update_in_crm") is None  # stale at once: taken over
    later.release(DOC)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sync_claims)).scalar() == 0
