"""Test tiers, applied at collection (conftest.py): `unit`, `http` and `slow` markers.

Why: the whole suite takes about ten minutes on two cores, most of it in a few dozen tests that
boot `dagster dev`, run whole reconciliations or fuzz the API. `uv run pytest -m "not slow"`
leaves those out for a developer's inner loop; CI runs everything. The tiers are kept here, in
one table measured from `--durations=0`, rather than as decorators spread over forty modules.

- `http`: the test talks to a real server (the sandboxes, the sync API, `dagster dev`) or the
  real PostgreSQL; it uses one of the fixtures that start them, or its module one of the entry
  points that do.
- `unit`: everything else (no server, no database other than a SQLite file).
- `slow`: measured at more than about 2 s on two cores (setup, call and teardown together);
  a module listed with `None` is slow as a whole.
"""

import pytest

SERVER_FIXTURES = {"sandbox", "pipeline_env", "pg_url", "store", "supabase_auth"}
SERVER_ENTRY_POINTS = {
    "start_sandbox",
    "serve_in_thread",
    "dagster_dev",
    "running_api",
    "profile_sandbox",
    "CrmHttp",
    "MetakockaHttp",
}

WHOLE_MODULE = None
SLOW: dict[str, set[str] | None] = {
    "test_amounts_e2e": WHOLE_MODULE,
    "test_analyst_queries": WHOLE_MODULE,
    "test_api_cli": WHOLE_MODULE,
    "test_conflicts_e2e": WHOLE_MODULE,
    "test_crm_mirror": WHOLE_MODULE,
    "test_deletions_e2e": WHOLE_MODULE,
    "test_deploy_postgres": WHOLE_MODULE,
    "test_fault_matrix": WHOLE_MODULE,
    "test_incremental": WHOLE_MODULE,
    "test_issued_bills": WHOLE_MODULE,
    "test_mappers": WHOLE_MODULE,
    "test_metakocka_statuses": WHOLE_MODULE,
    "test_on_demand_daemon": WHOLE_MODULE,
    "test_on_demand_e2e": WHOLE_MODULE,
    "test_ownership_e2e": WHOLE_MODULE,
    "test_readme_ui_path": WHOLE_MODULE,
    "test_reconciliation_e2e": WHOLE_MODULE,
    "test_security": WHOLE_MODULE,
    "test_api_fuzz": {
        "test_fuzzing_as_a_crm_user_finds_no_server_errors",
        "test_fuzzing_the_api_finds_no_server_errors",
    },
    "test_concurrency": {
        "test_overlapping_runs_at_once_create_nothing_twice",
        "test_the_claim_keeps_a_second_run_out_of_the_window_between_look_up_and_create",
    },
    "test_crash_safety": {
        "test_create_in_flight_when_the_process_dies_is_not_sent_again",
        "test_sigkill_at_seeded_points_then_rerun_converges",
    },
    "test_crm_credentials": {
        "test_on_demand_runs_and_the_change_sensor_use_the_crm_credentials",
        "test_the_nightly_run_syncs_into_the_company_the_crm_row_names",
    },
    "test_crm_real_schema": {
        "test_a_failed_line_replacement_leaves_the_old_lines",
        "test_a_four_decimal_price_and_a_cancelled_order_from_metakocka_stay_synced",
        "test_a_line_without_a_metakocka_product_code_is_quarantined_before_any_call",
        "test_a_reconciliation_writes_what_the_schema_has_and_then_has_nothing_to_do",
        "test_an_edit_the_crm_does_not_timestamp_is_found_by_the_next_run",
        "test_documents_are_the_organization_s_as_the_crm_shows_them",
        "test_every_document_and_line_is_read_under_max_rows",
        "test_the_demo_runs_on_either_schema_under_max_rows_100_and_then_has_nothing_to_do",
    },
    "test_deploy_config": {"test_run_retention_deletes_old_finished_runs"},
    "test_io_managers": {
        "test_a_sync_database_that_cannot_be_opened_says_so_in_the_first_line",
        "test_one_reconciliation_asset_on_its_own_names_the_job_to_launch",
    },
    "test_launchpad": {"test_a_run_launched_by_hand_carries_its_organization_tags"},
    "test_migrations": {"test_concurrent_upgrades_take_turns"},
    "test_on_demand_sensors": {
        "test_an_on_demand_sync_of_an_invalid_document_says_why",
        "test_change_sensor_queues_each_change_once_and_ignores_own_writes",
        "test_dry_run_plans_and_writes_nothing_then_a_failed_run_fails_its_requests",
    },
    "test_plan": {"test_every_document_appears_exactly_once_and_no_match_is_created"},
    "test_preflight": {"test_the_first_run_does_what_the_preflight_said"},
    "test_reporting": {"test_the_report_shows_status_direction_errors_and_history"},
    "test_retry_budget": {
        "test_attempts_are_bounded_and_each_failure_is_one_open_row",
        "test_refused_credentials_at_extraction_are_one_auth_row_not_a_crash",
        "test_retry_after_is_honoured_by_the_pushes",
    },
    "test_sandbox_runner": {"test_seeding_20k_documents_per_organization"},
    "test_schemas": {"test_validation_of_100k_lines_is_vectorised"},
}


def is_slow(item: pytest.Item) -> bool:
    module = item.module.__name__.rsplit(".", 1)[-1]
    if module not in SLOW:
        return False
    names = SLOW[module]
    return names is WHOLE_MODULE or item.originalname in names


def talks_to_a_server(item: pytest.Item) -> bool:
    return bool(SERVER_FIXTURES & set(item.fixturenames)) or bool(
        SERVER_ENTRY_POINTS & set(vars(item.module))
    )


def mark(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.http if talks_to_a_server(item) else pytest.mark.unit)
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


def unknown_slow_tests(items: list[pytest.Item]) -> list[str]:
    """Names in SLOW that no collected test has (a renamed test would silently join the fast
    tier): reported by conftest when the whole suite is collected."""
    collected = {(i.module.__name__.rsplit(".", 1)[-1], i.originalname) for i in items}
    modules = {module for module, _ in collected}
    return [
        f"{module}::{name}"
        for module, names in SLOW.items()
        for name in (names or ())
        if module in modules and (module, name) not in collected
    ]
