"""The sync database's clock: every timestamp it stores is the application's UTC time."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
