"""Dagster assets of one organization's reconciliation, in data-flow order:
extract (both sides) -> validated -> plan -> push (each way) -> sync_status / sync_error_log."""
