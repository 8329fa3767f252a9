"""Saving and loading the simulated Metakocka, so ``sync-pipeline sandbox`` survives a restart.

Why a plain JSON shape: the demo and the CLI keep the sandbox in a file between commands, and a
reader debugging a sync can open that file. Only primary data is saved (documents, partners,
products, numbering counters, the next mk_id); indexes are rebuilt on load.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from sync_pipeline.sandbox.metakocka_values import parse_timestamp

if TYPE_CHECKING:
    from sync_pipeline.sandbox.metakocka_index import CompanyStore
    from sync_pipeline.sandbox.metakocka_store import MetakockaState

FORMAT = "metakocka-sandbox/1"


def state_to_json(state: MetakockaState, stores: dict[str, CompanyStore]) -> dict[str, Any]:
    """The caller holds the state's lock."""
    return copy.deepcopy(
        {
            "format": FORMAT,
            "next_id": state._next_id,
            "quirks": state.quirks,
            "companies": {
                cid: {
                    "secret_key": state.companies[cid],
                    "duplicate_check": cid in state.duplicate_check,
                    "documents": [comp.docs[i] for i in sorted(comp.docs)],
                    "partners": list(comp.partners.values()),
                    "products": list(comp.products.values()),
                    "sequences": comp.sequences,
                    "status_register": comp.status_register,
                }
                for cid, comp in stores.items()
            },
        }
    )


def state_from_json(cls: type[MetakockaState], data: dict[str, Any]) -> MetakockaState:
    if data.get("format") != FORMAT:
        raise ValueError(f"not a saved sandbox Metakocka (format {data.get('format')!r})")
    companies = data["companies"]
    state = cls(
        {cid: c["secret_key"] for cid, c in companies.items()},
        duplicate_check={cid for cid, c in companies.items() if c["duplicate_check"]},
        quirks=bool(data.get("quirks")),
        first_mk_id=int(data["next_id"]),
    )
    for cid, saved in copy.deepcopy(companies).items():
        comp = state._stores[cid]
        comp.sequences = dict(saved["sequences"])
        comp.status_register = saved.get("status_register", comp.status_register)
        for partner in saved["partners"]:
            comp.partners[partner["mk_id"]] = partner
            comp.partner_by_count_code[partner["count_code"]] = partner["mk_id"]
            comp.partner_by_key[tuple(partner["key"])] = partner["mk_id"]
        for product in saved["products"]:
            comp.products[product["code"]] = product
            comp.product_by_id[product["mk_id"]] = product["code"]
            comp.product_by_id[product["count_code"]] = product["code"]
        for doc in saved["documents"]:
            moment = parse_timestamp(doc["last_change"], "last_change")
            state._store(comp, doc, int(moment.timestamp()))
    return state
