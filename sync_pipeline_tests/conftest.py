"""Shared fixtures: a real sandbox over HTTP, a real SQLite file, the real local PostgreSQL."""

import os
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.repository import SyncStore

from . import tiers
from .auth_helpers import SupabaseAuth

PG_URL = os.environ.get(
    "SYNC_PIPELINE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(tmp_path / "sandbox", documents_per_org=30, reset=True) as running:
        yield running


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sync.db'}"


def _pg_admin_engine():
    return sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Unreachable PostgreSQL: a skip on a developer machine, a failure in CI (CI=true).
    """
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable in CI at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = f"sync_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request):
    """A migrated SyncStore, once on a SQLite file and once on a fresh PostgreSQL database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    store = SyncStore(url)
    store.create_schema()
    yield store
    store.dispose()


@pytest.fixture
def pipeline_env(sandbox, sqlite_url, tmp_path):
    """Environment variables pointing the pipeline at the sandbox and a SQLite sync database."""
    with patched_environ(sandbox_environment(sandbox, sqlite_url, tmp_path)):
        yield Settings.from_env()


@pytest.fixture
def dagster_instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def supabase_auth():
    """The CRM's Supabase Auth: users' access tokens, and its signing keys served over HTTP."""
    auth = SupabaseAuth()
    try:
        yield auth
    finally:
        auth.stop()


def pytest_collection_modifyitems(config, items):
    """The `unit` / `http` / `slow` tiers (tiers.py)."""
    tiers.mark(items)
    stale = tiers.unknown_slow_tests(items)
    if stale:
        raise pytest.UsageError(f"tiers.SLOW names tests that do not exist: {', '.join(stale)}")
