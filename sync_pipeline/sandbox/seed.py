"""Reproducible sandbox data: organizations with credentials, and documents on both sides.

Why: the demo, the end-to-end tests and the benchmarks need the situations the pipeline must
handle (documents only in the CRM, only in Metakocka, linked by the old integration and unchanged,
linked and changed on one side, invalid ones) in known proportions, identical for the same seed.
Everything is drawn from ``random.Random`` seeded per organization; timestamps are back-dated from
a fixed anchor, so the same seed gives the same data and the same keys on every machine.

A "linked" document carries the link only on the Metakocka side, as the pipeline writes it:
``buyer_order`` = :func:`metakocka_link` of the CRM id and ``title`` = the CRM id.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.gc_pause import paused_gc
from sync_pipeline.sandbox.metakocka_store import MetakockaState
from sync_pipeline.sandbox.seed_documents import (
    DOC_TYPES,
    INVALID_KINDS,
    DocumentFactory,
    later,
    random_uuid,
)

ORG_NAMES = (
    "Acme d.o.o.",
    "Borovnica s.p.",
    "Cvetličarna Lipa d.o.o.",
    "Drava Tehnika d.o.o.",
    "Emona Trade d.o.o.",
    "Fužine Les s.p.",
)
CATEGORY_SHARES = (
    ("crm_only", 0.35),
    ("metakocka_only", 0.25),
    ("linked_unchanged", 0.20),
    ("linked_changed", 0.15),
    ("invalid", 0.05),
)
RESULT_CATEGORIES = (
    "crm_only",
    "metakocka_only",
    "linked_unchanged",
    "linked_changed_in_crm",
    "linked_changed_in_metakocka",
    "invalid",
)


@dataclass
class SandboxOrganization:
    """One tenant: its CRM organization and the credentials of both of its systems."""

    id: str
    name: str
    crm_api_key: str
    metakocka_company_id: str
    metakocka_secret_key: str


def make_organizations(count: int = 2, seed: int = 7) -> list[SandboxOrganization]:
    """``count`` organizations whose ids and keys come from ``seed`` alone."""
    rng = random.Random(f"organizations:{seed}")
    return [
        SandboxOrganization(
            id=random_uuid(rng),
            name=ORG_NAMES[i] if i < len(ORG_NAMES) else f"Podjetje {i + 1} d.o.o.",
            crm_api_key=f"crm_sk_{rng.getrandbits(128):032x}",
            metakocka_company_id=str(16 + i),
            metakocka_secret_key=f"mk_sk_{rng.getrandbits(96):024x}",
        )
        for i in range(count)
    ]


def metakocka_link(crm_id: str) -> str:
    """The external id put in Metakocka's ``buyer_order`` (28 chars, under MK's limit of 30)."""
    return "FC" + base64.b32encode(bytes.fromhex(crm_id.replace("-", ""))).decode().rstrip("=")


def category_counts(documents_per_org: int) -> dict[str, int]:
    """Documents per category (largest remainder), at least 3 invalid ones from 20 documents."""
    n = documents_per_org
    exact = {name: n * share for name, share in CATEGORY_SHARES}
    counts = {name: int(v) for name, v in exact.items()}
    for name in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True):
        if sum(counts.values()) >= n:
            break
        counts[name] += 1
    if n >= 20 and counts["invalid"] < 3:
        counts["crm_only"] -= 3 - counts["invalid"]
        counts["invalid"] = 3
    return counts


def seed_sandbox(
    crm: CrmState,
    mk: MetakockaState,
    organizations: list[SandboxOrganization],
    documents_per_org: int = 60,
    seed: int = 7,
) -> dict[str, Any]:
    """Register every organization's keys and fill both systems; returns what was seeded."""
    summary: dict[str, Any] = {
        "seed": seed,
        "documents_per_org": documents_per_org,
        "organizations": {},
    }
    with paused_gc():
        for org in organizations:
            crm.api_keys.add(org.crm_api_key)
            mk.add_company(org.metakocka_company_id, org.metakocka_secret_key)
            factory = DocumentFactory(org.id, random.Random(f"documents:{seed}:{org.id}"))
            summary["organizations"][org.id] = _seed_organization(
                crm, mk, org, factory, documents_per_org
            )
        crm.finish_bulk_load()
    return summary


def _seed_organization(
    crm: CrmState, mk: MetakockaState, org: SandboxOrganization, factory: DocumentFactory, n: int
) -> dict[str, Any]:
    """Put one organization's ``n`` documents, by category, into the CRM and Metakocka."""
    counts = category_counts(n)
    plan = [c for c, k in counts.items() for _ in range(k)]
    factory.rng.shuffle(plan)
    invalid: dict[str, str] = {}
    seeded = dict.fromkeys(RESULT_CATEGORIES, 0)
    rnd, company = factory.random, org.metakocka_company_id
    for i, category in enumerate(plan):
        doc_type = DOC_TYPES[i] if i < len(DOC_TYPES) else None  # every type appears
        row, items = factory.document(doc_type, foreign_invoice=i == len(DOC_TYPES))
        crm_side = mk_side = (row, items)
        if category == "invalid":
            kind = INVALID_KINDS[len(invalid) % len(INVALID_KINDS)]
            crm_side = factory.spoil(row, items, kind)
            invalid[row["id"]] = kind
        elif category == "linked_changed":
            category += "_in_crm" if rnd() < 0.5 else "_in_metakocka"
            if category.endswith("crm"):
                crm_side = factory.change(row, items)
            else:
                mk_side = factory.change(row, items)
        seeded[category] += 1
        crm_row, mk_payload, mk_moment = crm_side[0], None, None
        if category == "metakocka_only":
            mk_payload = factory.to_metakocka(*mk_side)
            mk_moment = row["created_at"]
        elif category.startswith("linked"):
            mk_payload = factory.to_metakocka(*mk_side, buyer_order=metakocka_link(row["id"]))
            mk_moment = later(row["updated_at"], 1, rnd)  # the old integration's push
            if category == "linked_changed_in_crm":
                crm_row["updated_at"] = later(mk_moment, 2, rnd)
            elif category == "linked_changed_in_metakocka":
                mk_moment = later(mk_moment, 2, rnd)
        if category != "metakocka_only":
            crm.insert_document(crm_row, crm_side[1], validate=False)
        if mk_payload is not None:
            mk.insert_document(company, mk_payload, last_change=datetime.fromisoformat(mk_moment))
    return {
        "name": org.name,
        "categories": seeded,
        "crm_documents": n - seeded["metakocka_only"],
        "metakocka_documents": n - seeded["crm_only"] - seeded["invalid"],
        "invalid_documents": invalid,
    }
