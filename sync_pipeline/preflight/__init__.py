"""Preflight: what the first run against the real systems will do, and what will stop it, asked
read-only before anything is written.

The seed's troubleshooting section is what an operator meets on day one (check the Metakocka
credentials, that documents have what Metakocka requires, deleted documents, duplicates); the
preflight answers each of those questions from the systems themselves, per organization, as
findings of `ok`, `warn` or `blocker` with the fix (`findings.py`):

- the CRM (`crm_checks.py`): reachable, the key, the schema profile (and every missing column),
  docs/crm-setup.sql's trigger, the effective ``max-rows``, the organization's documents by
  ``organization_id`` and by member ``user_id``, the integration user;
- Metakocka (`metakocka_checks.py`): reachable, the company id and secret (one search), the
  statuses its documents carry and which have no mapping, the duplicate-buyer_order check;
- the first run (`first_run.py`, `estimate.py`): the nightly run's own extraction, validation and
  plan against an empty link table, so the counts are the ones the first run will find, and the
  API calls and time its writes take at the latency observed here.

Every request goes through a session that refuses writes before they are sent
(`read_only.py`), so no change to the shared use cases can make the preflight write.
`run.py` puts it together; the CLI (`sync-pipeline preflight`) and the Dagster job `preflight`
call it.
"""
