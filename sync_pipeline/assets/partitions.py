"""The organization partition: each organization's runs, failures and history stand apart in the
UI."""

import dagster as dg

from sync_pipeline.settings import Settings


def organization_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    """One partition per organization, keyed by its readable `Organization.key`."""
    return dg.StaticPartitionsDefinition(settings.partition_keys)
