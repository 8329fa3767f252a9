"""The directions a document is synced in, named once.

`sync_status.last_direction`, `sync_error_log.direction` and the push outcomes use the two
push directions; a sync request (the CRM's buttons, webhooks, the change sensor) may also ask
for `both`, in which case each document goes whichever way its plan says.
"""

CRM_TO_METAKOCKA = "crm_to_metakocka"
METAKOCKA_TO_CRM = "metakocka_to_crm"
BOTH = "both"

PUSH_DIRECTIONS = (CRM_TO_METAKOCKA, METAKOCKA_TO_CRM)
"""The way one document was (or will be) pushed."""
REQUEST_DIRECTIONS = (*PUSH_DIRECTIONS, BOTH)
"""What a sync request may ask for."""

PUSHES_FROM = {"crm": (CRM_TO_METAKOCKA, BOTH), "metakocka": (METAKOCKA_TO_CRM, BOTH)}
"""The request directions that push a change made on one side."""
