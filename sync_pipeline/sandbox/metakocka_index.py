"""One company's documents in the simulated Metakocka, with the indexes searches need.

Why: benchmarks page through 100,000 documents per company, 100 at a time. A search page must
cost O(page) or O(log n), not a Python loop over every document, so each company keeps sorted
mk_id lists per doc_type, a (last_change, mk_id) list per doc_type, a buyer_order index, and a
small cache of filtered id lists that is dropped whenever the company's data changes.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from sync_pipeline.sandbox.metakocka_values import (
    DOC_TYPES,
    STANDARD_STATUS_REGISTER,
    MkError,
    as_list,
    country_iso,
    invalid,
    parse_date,
    parse_timestamp,
    resolve_status,
)

#: query_advance filter types the sandbox understands (§7), per doc_type family.
FILTER_TYPES = (
    "customer_order",
    "doc_date_from",
    "doc_date_to",
    "last_change_from",
    "last_change_to",
    "status_list",
    "partner_mk_id",
    "partner_tax_num",
    "partner_country",
)


class DocMeta(NamedTuple):
    """What the filters look at, kept beside the document so a filter never re-parses it."""

    doc_type: str
    last_change: int  # epoch seconds, UTC
    doc_date: date
    status: str | None
    """The status label (``status_code``)."""
    buyer_order: str


@dataclass(frozen=True)
class SearchFilter:
    """A normalised ``query_advance`` (+ ``query``); hashable, so it keys the result cache."""

    customer_order: str | None = None
    doc_date_from: date | None = None
    doc_date_to: date | None = None
    last_change_from: int | None = None
    last_change_to: int | None = None
    status_list: frozenset[str] | None = None
    partner_mk_id: str | None = None
    partner_tax_num: str | None = None
    partner_country: str | None = None
    query: str | None = None

    @property
    def empty(self) -> bool:
        return self == _NO_FILTER

    @classmethod
    def parse(
        cls, doc_type: str, request: dict[str, Any], status_register: dict[str, str | None]
    ) -> SearchFilter:
        values: dict[str, Any] = {}
        for item in as_list(request.get("query_advance")):
            if not isinstance(item, dict) or "type" not in item:
                raise invalid("query_advance", item)
            kind, value = str(item["type"]), item.get("value", "")
            if kind not in FILTER_TYPES:
                raise MkError("2", f"Unknown query_advance type : {kind}")
            if kind.startswith("doc_date") and doc_type == "sales_offer":
                # Reported by a third-party client (§7): offers reject date filters.
                raise MkError("2", f"cannot get beQueryParam : {kind}")
            if kind.startswith("doc_date"):
                values[kind] = parse_date(value, kind)
            elif kind.startswith("last_change"):
                values[kind] = int(parse_timestamp(value, kind).timestamp())
            elif kind == "status_list":
                parts = [p for p in str(value).split(",") if p.strip()]
                # "register descriptions" (§7): the labels, as in a write (§4)
                values[kind] = frozenset(
                    resolve_status(status_register, p, "status_list") for p in parts
                )
            elif kind == "partner_country":
                values[kind] = country_iso(value)
            else:
                values[kind] = str(value)
        query = str(request.get("query") or "").strip().lower()
        return cls(**values, query=query or None)


_NO_FILTER = SearchFilter()


@dataclass
class CompanyStore:
    """Documents, partners and products of one company. Not thread-safe by itself: the
    owning ``MetakockaState`` serialises access."""

    docs: dict[int, dict] = field(default_factory=dict)
    meta: dict[int, DocMeta] = field(default_factory=dict)
    ids_by_type: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in DOC_TYPES})
    changes_by_type: dict[str, list[tuple[int, int]]] = field(
        default_factory=lambda: {t: [] for t in DOC_TYPES}
    )
    by_buyer_order: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    partners: dict[str, dict] = field(default_factory=dict)  # mk_id -> stored partner
    partner_by_count_code: dict[str, str] = field(default_factory=dict)
    partner_by_key: dict[tuple, str] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)  # code -> product
    product_by_id: dict[str, str] = field(default_factory=dict)  # mk_id / count_code -> code
    sequences: dict[str, int] = field(default_factory=dict)
    status_register: dict[str, str | None] = field(
        default_factory=lambda: dict(STANDARD_STATUS_REGISTER)
    )
    """The company's statuses: label -> internal code (None: the status has none)."""
    version: int = 0
    _cache: OrderedDict = field(default_factory=OrderedDict)

    # -- maintenance ---------------------------------------------------------------------
    def add(self, mk_id: int, doc: dict, meta: DocMeta) -> None:
        self.docs[mk_id] = doc
        self.meta[mk_id] = meta
        ids = self.ids_by_type[meta.doc_type]
        if not ids or ids[-1] < mk_id:
            ids.append(mk_id)
        else:
            bisect.insort(ids, mk_id)
        bisect.insort(self.changes_by_type[meta.doc_type], (meta.last_change, mk_id))
        if meta.buyer_order:
            self.by_buyer_order.setdefault((meta.doc_type, meta.buyer_order), []).append(mk_id)
        self.version += 1

    def remove(self, mk_id: int) -> dict:
        meta = self.meta.pop(mk_id)
        doc = self.docs.pop(mk_id)
        ids = self.ids_by_type[meta.doc_type]
        del ids[bisect.bisect_left(ids, mk_id)]
        changes = self.changes_by_type[meta.doc_type]
        del changes[bisect.bisect_left(changes, (meta.last_change, mk_id))]
        if meta.buyer_order:
            key = (meta.doc_type, meta.buyer_order)
            same = self.by_buyer_order[key]
            same.remove(mk_id)
            if not same:
                del self.by_buyer_order[key]
        self.version += 1
        return doc

    def next_sequence(self, prefix: str) -> int:
        self.sequences[prefix] = n = self.sequences.get(prefix, 0) + 1
        return n

    def with_buyer_order(self, doc_type: str, buyer_order: str) -> list[int]:
        return sorted(self.by_buyer_order.get((doc_type, buyer_order), ()))

    # -- search --------------------------------------------------------------------------
    def matching_ids(self, doc_type: str, flt: SearchFilter) -> list[int]:
        """mk_ids of ``doc_type`` passing ``flt``, ascending. The unfiltered list is the live
        index (callers slice it at once and must not keep it)."""
        if flt.empty:
            return self.ids_by_type[doc_type]
        key = (doc_type, flt)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.version:
            self._cache.move_to_end(key)
            return hit[1]
        ids = self._filter(doc_type, flt)
        self._cache[key] = (self.version, ids)
        if len(self._cache) > 32:
            self._cache.popitem(last=False)
        return ids

    def _filter(self, doc_type: str, flt: SearchFilter) -> list[int]:
        if flt.customer_order is not None:
            candidates = self.with_buyer_order(doc_type, flt.customer_order)
        elif flt.last_change_from is not None or flt.last_change_to is not None:
            changes = self.changes_by_type[doc_type]
            lo = (
                0
                if flt.last_change_from is None
                else bisect.bisect_left(changes, (flt.last_change_from, -1))
            )
            hi = (
                len(changes)
                if flt.last_change_to is None
                else bisect.bisect_right(changes, (flt.last_change_to, float("inf")))
            )
            candidates = sorted(mk_id for _, mk_id in changes[lo:hi])
        else:
            candidates = self.ids_by_type[doc_type]
        meta, docs = self.meta, self.docs
        return [i for i in candidates if self._passes(meta[i], docs[i], flt)]

    @staticmethod
    def _passes(m: DocMeta, doc: dict, f: SearchFilter) -> bool:
        if f.customer_order is not None and m.buyer_order != f.customer_order:
            return False
        if f.last_change_from is not None and m.last_change < f.last_change_from:
            return False
        if f.last_change_to is not None and m.last_change > f.last_change_to:
            return False
        if f.doc_date_from is not None and m.doc_date < f.doc_date_from:
            return False
        if f.doc_date_to is not None and m.doc_date > f.doc_date_to:
            return False
        if f.status_list is not None and m.status not in f.status_list:
            return False
        partner = doc.get("partner") or {}
        if f.partner_mk_id is not None and partner.get("mk_id") != f.partner_mk_id:
            return False
        if f.partner_tax_num is not None and partner.get("tax_id_number") != f.partner_tax_num:
            return False
        if f.partner_country is not None and partner.get("country_iso_2") != f.partner_country:
            return False
        if f.query is not None:
            haystack = " ".join(
                str(v)
                for v in (
                    doc.get("count_code"),
                    doc.get("buyer_order"),
                    doc.get("title"),
                    partner.get("customer"),
                )
                if v
            ).lower()
            if f.query not in haystack:
                return False
        return True
