"""The baseline of the plan benchmark: the rules of `build_sync_plan`, written the straightforward
way, one row at a time in Python: walk the frames row by row, join through dicts.

Two ways to walk: `iterrows` (the pandas idiom most per-row code starts with) and `itertuples`
(the tuned one). Both return the number of documents per action,
which the benchmark checks against the vectorised plan's on the same input, so they are timed
doing the same work.
"""

from collections import Counter, defaultdict

import pandas as pd

from sync_pipeline.domain.document import crm_id_for_metakocka_document


def loop_plan_counts(
    crm: pd.DataFrame,
    metakocka: pd.DataFrame,
    links: pd.DataFrame,
    organization_id: str,
    *,
    walk: str = "iterrows",
) -> Counter:
    rows = _iterrows if walk == "iterrows" else _itertuples
    crm_rows = {row.crm_document_id: row for row in rows(crm)}
    mk_rows = {row.metakocka_id: row for row in rows(metakocka)}
    actions: Counter = Counter()
    crm_linked: set = set()  # present CRM documents covered by a complete link
    mk_link_crm: dict = {}  # present Metakocka document -> the CRM id its link names
    linked_crm_ids: set = set()  # every CRM id a complete link names

    # Rule 1: a complete link pairs its two documents; compare both hashes with the link's.
    for link in rows(links):
        crm_id, mk_id = _value(link.crm_document_id), _value(link.metakocka_id)
        if crm_id is None or mk_id is None:
            continue
        linked_crm_ids.add(crm_id)
        c, m = crm_rows.get(crm_id), mk_rows.get(mk_id)
        if c is not None:
            crm_linked.add(crm_id)
        if m is not None:
            mk_link_crm[mk_id] = crm_id
        if c is None and m is None:
            continue
        if c is None:
            actions["deleted_in_crm"] += 1
        elif m is None:
            actions["deleted_in_metakocka"] += 1
        else:
            crm_changed = _differs(c.content_hash, link.content_hash)
            mk_changed = _differs(m.content_hash, link.content_hash)
            if crm_changed and mk_changed and _differs(c.content_hash, m.content_hash):
                actions["conflict"] += 1
            elif crm_changed and not mk_changed:
                actions["update_in_metakocka"] += 1
            elif mk_changed and not crm_changed:
                actions["update_in_crm"] += 1
            else:
                actions["unchanged"] += 1

    # Rule 2: every unlinked Metakocka document claims CRM ids (its buyer_order reference, and
    # the id it would get in the CRM when that document exists).
    edges: list[tuple] = []  # (metakocka id, claimed CRM id)
    free_mk: list = []
    claims_on: Counter = Counter()  # present CRM id -> claims on it (stray ones included)
    for row in rows(metakocka):
        mk_id, ref = row.metakocka_id, _value(row.crm_document_id)
        if mk_id in mk_link_crm:
            if ref is not None and ref != mk_link_crm[mk_id]:
                if ref in crm_rows and ref not in crm_linked:
                    claims_on[ref] += 1  # a linked document's claim on another document
            continue
        free_mk.append(mk_id)
        derived = crm_id_for_metakocka_document(organization_id, mk_id)
        if ref is not None:
            edges.append((mk_id, ref))
        if derived in crm_rows and derived != ref:
            edges.append((mk_id, derived))
    strays = set(claims_on)
    edges_of: dict = defaultdict(list)
    absent_claims: Counter = Counter()
    for mk_id, target in edges:
        edges_of[mk_id].append(target)
        if target in crm_rows:
            claims_on[target] += 1
        else:
            absent_claims[target] += 1

    # Rule 3: a claim that is the only one on both ends pairs; anything murkier is a conflict.
    claimed_crm: set = set(strays)
    conflict_crm: set = {c for c in strays if c not in crm_linked}
    for mk_id in free_mk:
        targets = edges_of.get(mk_id)
        if not targets:
            actions["create_in_crm"] += 1
            continue
        murky = False
        for target in targets:
            present = target in crm_rows
            taken = target in crm_linked if present else target in linked_crm_ids
            degree = (claims_on[target] if present else absent_claims[target]) + taken
            if present:
                claimed_crm.add(target)
            if len(targets) == 1 and degree == 1 and not taken:
                if not present:
                    actions["deleted_in_crm"] += 1
                    continue
                c, m = crm_rows[target], mk_rows[mk_id]
                if not _differs(c.content_hash, m.content_hash):
                    actions["unchanged"] += 1
                    continue
                crm_time, mk_time = pd.Timestamp(c.updated_at), pd.Timestamp(m.updated_at)
                if crm_time > mk_time:
                    actions["update_in_metakocka"] += 1
                elif mk_time > crm_time:
                    actions["update_in_crm"] += 1
                else:
                    actions["conflict"] += 1
            else:
                murky = True
                if present and target not in crm_linked:
                    conflict_crm.add(target)
        if murky:
            actions["conflict"] += 1
    actions["conflict"] += len(conflict_crm)

    # What nobody claims and no link covers is new on its side.
    for crm_id in crm_rows:
        if crm_id not in crm_linked and crm_id not in claimed_crm:
            actions["create_in_metakocka"] += 1
    return +actions


def _iterrows(frame: pd.DataFrame):
    return (row for _, row in frame.iterrows())


def _itertuples(frame: pd.DataFrame):
    return frame.itertuples(index=False)


def _value(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def _differs(left, right) -> bool:
    return left is None or left != right
