"""Names of the per-organization sync policies (light: settings and the CLI import it)."""

MANUAL, CRM_WINS, METAKOCKA_WINS, NEWEST_WINS = (
    "manual",
    "crm_wins",
    "metakocka_wins",
    "newest_wins",
)
CONFLICT_POLICIES = (MANUAL, CRM_WINS, METAKOCKA_WINS, NEWEST_WINS)
"""What a reconciliation does with a conflict (see `sync_pipeline.domain.conflicts`)."""

WINNER_CRM, WINNER_METAKOCKA = "crm", "metakocka"
WINNERS = (WINNER_CRM, WINNER_METAKOCKA)
"""The sides an operator (or a policy) can pick for a conflict."""
