"""Reproducible sandbox data: organizations with credentials, and documents on both sides.

Why: the demo, the end-to-end tests and the benchmarks need the situations the pipeline must
handle (documents only in the CRM, only in Metakocka, linked by the old integration and unchanged,
linked and changed on one side, invalid ones, credit notes the CRM has no type for) in known
proportions, identical for the same seed. Everything is drawn from ``random.Random`` seeded per
organization; timestamps are back-dated from a fixed anchor, so the same seed gives the same data
and the same keys on every machine.

Each organization's integration user has its Metakocka credentials in the CRM's
``metakocka_credentials``, as the CRM's settings page stores them (``credentials_row``).

A "linked" document carries the link only on the Metakocka side, as the pipeline writes it:
``buyer_order`` = :func:`metakocka_link` of the CRM id and ``title`` = the CRM id. Half of the
customers Metakocka knows as partners get a ``metakocka_contact_mappings`` row in the CRM.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.gc_pause import paused_gc
from sync_pipeline.sandbox.metakocka_store import MetakockaState
from sync_pipeline.sandbox.seed_documents import (
    CRM_TYPES,
    INVALID_KINDS,
    SERVICE_PRODUCT_CODE,
    DocumentFactory,
    SeedDocument,
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
CREDIT_NOTE_SHARE = 0.1
"""Share of the documents born in Metakocka that are credit notes (the CRM has no such type)."""


@dataclass
class SandboxOrganization:
    """One tenant: its CRM organization, the user owning what comes from Metakocka, and the
    credentials of both of its systems."""

    id: str
    name: str
    crm_api_key: str
    metakocka_company_id: str
    metakocka_secret_key: str
    integration_user_id: str = ""
    service_product_code: str = SERVICE_PRODUCT_CODE


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
            integration_user_id=random_uuid(rng),
        )
        for i in range(count)
    ]


def credentials_row(org: SandboxOrganization) -> dict[str, Any]:
    """The organization's Metakocka credentials as the CRM's own settings save them
    (aware88/fresh-ai-crm, src/lib/integrations/metakocka/service.ts, saveCredentials): one
    row per user (sql-migrations/57: UNIQUE(user_id)), here the integration user's, active, its
    organization_id left NULL (the CRM's code never writes it), api_endpoint its default."""
    return {
        "user_id": org.integration_user_id,
        "company_id": org.metakocka_company_id,
        "secret_key": org.metakocka_secret_key,
        "is_active": True,
    }


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


def organization_factory(org: SandboxOrganization, seed: int) -> DocumentFactory:
    """The document factory of one organization (its catalog and documents come from ``seed``)."""
    return DocumentFactory(
        org.id,
        random.Random(f"documents:{seed}:{org.id}"),
        integration_user_id=org.integration_user_id,
        service_product_code=org.service_product_code,
    )


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
            factory = organization_factory(org, seed)
            for table, rows in factory.catalog_rows(org.name):
                crm.insert(table, rows)
            crm.insert("metakocka_credentials", [credentials_row(org)])
            summary["organizations"][org.id] = _seed_organization(
                crm, mk, org, factory, documents_per_org
            )
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
    credit_notes = 0
    partners: dict[str, dict] = {}
    rnd, company = factory.random, org.metakocka_company_id
    for i, category in enumerate(plan):
        doc_type = CRM_TYPES[i] if i < len(CRM_TYPES) else None  # every type appears
        if category == "metakocka_only" and (credit_notes == 0 or rnd() < CREDIT_NOTE_SHARE):
            doc_type = "credit_note"
            credit_notes += 1
        doc = factory.document(doc_type, foreign_invoice=i == len(CRM_TYPES))
        crm_side = mk_side = doc
        if category == "invalid":
            kind = INVALID_KINDS[len(invalid) % len(INVALID_KINDS)]
            crm_side = factory.spoil(doc, kind)
            invalid[doc.id] = kind
        elif category == "linked_changed":
            category += "_in_crm" if rnd() < 0.5 else "_in_metakocka"
            if category.endswith("crm"):
                crm_side = factory.change(doc)
            else:
                mk_side = factory.change(doc)
        seeded[category] += 1
        mk_payload, mk_moment = None, None
        if category == "metakocka_only":
            mk_payload = factory.to_metakocka(factory.born_in_metakocka(mk_side))
            mk_moment = doc.created_at
        elif category.startswith("linked"):
            mk_payload = factory.to_metakocka(mk_side, buyer_order=metakocka_link(doc.id))
            mk_moment = later(doc.updated_at, 1, rnd)  # the old integration's push
            if category == "linked_changed_in_crm":
                crm_side = _touched(crm_side, later(mk_moment, 2, rnd))
            elif category == "linked_changed_in_metakocka":
                mk_moment = later(mk_moment, 2, rnd)
        if category != "metakocka_only":
            factory.put_in_crm(crm, crm_side)
        if mk_payload is not None:
            answer = mk.insert_document(
                company, mk_payload, last_change=datetime.fromisoformat(mk_moment)
            )
            if doc.customer["id"] is not None:
                partners[doc.customer["id"]] = answer["partner"]
    _map_contacts(crm, mk, org, factory, partners)
    return {
        "name": org.name,
        "categories": seeded,
        "credit_notes": credit_notes,
        "crm_documents": n - seeded["metakocka_only"],
        "metakocka_documents": n - seeded["crm_only"] - seeded["invalid"],
        "invalid_documents": invalid,
    }


def _touched(doc: SeedDocument, moment: str) -> SeedDocument:
    return replace(doc, updated_at=moment)


def _map_contacts(
    crm: CrmState,
    mk: MetakockaState,
    org: SandboxOrganization,
    factory: DocumentFactory,
    partners: dict[str, dict],
) -> None:
    """Every other contact Metakocka knows as a partner gets a contact mapping in the CRM."""
    rows = []
    for contact_id in sorted(partners)[::2]:
        partner = mk.partner(org.metakocka_company_id, partners[contact_id]["mk_id"])
        rows.append(
            {
                "user_id": factory.users[0],
                "contact_id": contact_id,
                "metakocka_id": partner["mk_id"],
                "metakocka_code": partner["count_code"],
                "organization_id": org.id,
            }
        )
    if rows:
        crm.insert("metakocka_contact_mappings", rows)
