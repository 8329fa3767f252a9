"""Database URLs as people read them: what messages and commands print of a sync database."""

import sqlalchemy as sa


def printable_url(url: str) -> str:
    """`url` with its password masked: safe in a terminal, a log line or the Dagster UI."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)
