"""In-memory state and API semantics of the simulated Metakocka (no HTTP here).

Why separate from the app: the seeder, tests and the HTTP app must share one implementation of
put/get/update/delete/search, so a seeded document is exactly what the API would have stored.
Every operation takes the request body and returns the response body, or raises ``MkError``.
Section numbers refer to ``/work/shared/metakocka-api.md``.
"""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from typing import Any

from sync_pipeline.sandbox.metakocka_index import CompanyStore, DocMeta
from sync_pipeline.sandbox.metakocka_lines import build_document, line_changes
from sync_pipeline.sandbox.metakocka_persist import state_from_json, state_to_json
from sync_pipeline.sandbox.metakocka_search import discovery, search_page
from sync_pipeline.sandbox.metakocka_sums import show_payments
from sync_pipeline.sandbox.metakocka_values import (
    BILL_TYPES,
    DOC_TYPES,
    TAX_RATES,
    MkError,
    apply_quirks,
    as_list,
    format_decimal,
    format_timestamp,
    is_true,
    now_utc,
    parse_date,
    parse_timestamp,
    resolve_status,
)

FIRST_MK_ID = 1600200000
ISSUE_MARKS = ("publish_ts", "furs_eor", "furs_zoi")
"""What only an issued bill carries (metakocka-api.md section 6: publish_ts, furs_eor, furs_zoi)."""
INTERNAL_FIELDS = frozenset({"last_change"})
"""Kept with a stored document but never answered: the documentation has no ``last_change`` field
on a document, only the search filters ``last_change_from``/``last_change_to`` (metakocka-api.md
sections 5 and 7), so a client can learn a change time only by searching."""
NOT_FOUND_CODES = ("2", "6")
"""The opr_codes Metakocka answers a missing document with (both occur; none is documented)."""
_DUPLICATE_CHECKED = frozenset({"sales_order"}) | BILL_TYPES
#: Fields update_document may change on a sales order (§6); bills only take status_code.
_ORDER_UPDATABLE = (
    "delivery_type",
    "status_code",
    "tracking_code",
    "tracking_intermediate_code",
    "shipped_date",
    "discount_value",
    "parcel_shop_id",
    "notes",
    "notes_header",
    "warehouse",
    "extra_column",
    "partner",
    "receiver",
)


class MetakockaError(ValueError):
    """Raised by the convenience methods (seeder API) when MK would answer opr_code != 0."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("opr_desc") or body.get("opr_desc_app") or str(body))
        self.body = body


class MetakockaState:
    """All companies of one simulated Metakocka server. Thread-safe (one lock)."""

    def __init__(
        self,
        companies: dict[str, str],
        *,
        duplicate_check: set[str] | None = None,
        quirks: bool = False,
        first_mk_id: int = FIRST_MK_ID,
    ) -> None:
        self.companies = {str(k): str(v) for k, v in companies.items()}
        self.duplicate_check = {str(c) for c in duplicate_check or ()}
        self.quirks = quirks
        self.not_found_code = NOT_FOUND_CODES[-1]
        """The opr_code of "cannot find the document": undocumented (metakocka-api.md section 6:
        "expect opr_code != 0, likely 2 or 6"), so either can be chosen and tests cover both."""
        self._next_id = first_mk_id
        self._lock = threading.RLock()
        self._stores = {cid: CompanyStore() for cid in self.companies}

    # -- administration ------------------------------------------------------------------
    def add_company(self, company_id: str, secret_key: str) -> None:
        with self._lock:
            self.companies[str(company_id)] = str(secret_key)
            self._stores.setdefault(str(company_id), CompanyStore())

    def set_duplicate_check(self, company_id: str, enabled: bool) -> None:
        with self._lock:
            (self.duplicate_check.add if enabled else self.duplicate_check.discard)(str(company_id))

    def authenticate(self, body: dict[str, Any]) -> str:
        """Company id of a request whose secret_key/company_id pair is valid, else opr_code 3."""
        cid = str(body.get("company_id", "")).strip()
        if not cid or self.companies.get(cid) != str(body.get("secret_key", "")):
            raise MkError("3", "Invalid value for secret_key and company_id")
        return cid

    def new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id - 1)

    # -- API operations (request body -> response body) ----------------------------------
    def put_document(
        self, cid: str, req: dict[str, Any], last_change: datetime | None = None
    ) -> dict[str, Any]:
        """Create, or with ``mk_id`` fully replace, a document (§4)."""
        doc_type = _doc_type(req)
        with self._lock:
            comp = self._stores[cid]
            existing = None
            if req.get("mk_id") not in (None, ""):
                existing = self._find(comp, doc_type, req["mk_id"])
                if any(existing.get(key) for key in ISSUE_MARKS):
                    # Stricter reading: the docs allow only status_code on a bill's update
                    # (section 6), and an issued (fiscalized) invoice is legally immutable.
                    raise MkError("6", f"Bill {existing['mk_id']} is issued and cannot be changed")
            doc, new_partner, new_products = build_document(self, comp, doc_type, req, existing)
            if existing is None and cid in self.duplicate_check and doc_type in _DUPLICATE_CHECKED:
                self._refuse_duplicate(comp, doc_type, doc)
            return self._commit(comp, doc, existing, new_partner, new_products, last_change)

    def get_document(self, cid: str, req: dict[str, Any]) -> dict[str, Any]:
        """Read by ``doc_id``; sales orders also by ``buyer_order`` (first match) (§5)."""
        doc_type = _doc_type(req)
        with self._lock:
            comp = self._stores[cid]
            if req.get("doc_id") not in (None, ""):
                doc = self._find(comp, doc_type, req["doc_id"])
            elif doc_type == "sales_order" and req.get("buyer_order") not in (None, ""):
                doc = self._by_buyer_order(comp, str(req["buyer_order"]))
            else:
                raise MkError("2", "Paramether 'doc_id' is missing")
            return {"opr_code": "0", **self.render(doc, req)}

    def update_document(self, cid: str, req: dict[str, Any]) -> dict[str, Any]:
        """Partial change (§6): sales orders by mk_id/buyer_order, bills only status_code."""
        doc_type = _doc_type(req)
        if doc_type == "sales_offer":
            raise MkError("2", "update_document is not supported for doc_type : sales_offer")
        with self._lock:
            comp = self._stores[cid]
            if req.get("mk_id") not in (None, ""):
                doc = self._find(comp, doc_type, req["mk_id"])
            elif doc_type == "sales_order" and req.get("buyer_order") not in (None, ""):
                doc = self._by_buyer_order(comp, str(req["buyer_order"]))
            elif doc_type in BILL_TYPES and req.get("count_code") not in (None, ""):
                doc = self._by_count_code(comp, doc_type, str(req["count_code"]))
            else:
                raise MkError("2", "Paramether 'mk_id' is missing")
            if doc_type in BILL_TYPES:
                changes = {"status_code": req["status_code"]} if "status_code" in req else {}
            else:
                changes = {k: req[k] for k in _ORDER_UPDATABLE if k in req}
                if "count_code_new" in req:
                    changes["count_code"] = req["count_code_new"]
                for name in req.get("clear") or ():
                    changes[str(name)] = ""
                changes.update(line_changes(doc, req))
            self._apply_changes(comp, doc, changes, None)
            return {"opr_code": "0"}

    def change_document_status(self, cid: str, req: dict[str, Any]) -> dict[str, Any]:
        """Set the status of sales orders by ``mk_id``, ``mk_id_list`` or ``buyer_order`` (§6;
        documented for sales_order and warehouse_receiving_note, and the sandbox has no
        warehouse documents). The status is a label of the company's register (§6: "register
        description"), refused otherwise like any other write of it."""
        doc_type = _doc_type(req)
        if doc_type != "sales_order":
            raise MkError("2", f"change_document_status is not supported for doc_type : {doc_type}")
        if "status_code" not in req:
            raise MkError("2", "Paramether 'status_code' is missing")
        with self._lock:
            comp = self._stores[cid]
            if req.get("mk_id_list") not in (None, "", []):
                docs = [self._find(comp, doc_type, i) for i in as_list(req["mk_id_list"])]
            elif req.get("mk_id") not in (None, ""):
                docs = [self._find(comp, doc_type, req["mk_id"])]
            elif req.get("buyer_order") not in (None, ""):
                docs = [self._by_buyer_order(comp, str(req["buyer_order"]))]
            else:
                raise MkError("2", "Paramether 'mk_id' is missing")
            resolve_status(comp.status_register, req["status_code"])  # all or nothing
            for doc in docs:
                self._apply_changes(comp, doc, {"status_code": req["status_code"]}, None)
            return {"opr_code": "0"}

    def delete_document(self, cid: str, req: dict[str, Any]) -> dict[str, Any]:
        doc_type = _doc_type(req)
        if doc_type != "sales_order":
            raise MkError("2", f"delete_document is not supported for doc_type : {doc_type}")
        with self._lock:
            comp = self._stores[cid]
            doc = self._find(comp, doc_type, req.get("mk_id") or req.get("doc_id") or "")
            comp.remove(int(doc["mk_id"]))
            return {"opr_code": "0"}

    def search(
        self, cid: str, req: dict[str, Any], *, echo_requested_limit: bool = False
    ) -> dict[str, Any]:
        """One doc_type, sorted by mk_id, at most 100 per page (§7)."""
        doc_type = _doc_type(req)
        with self._lock:
            return search_page(self._stores[cid], doc_type, req, self.render, echo_requested_limit)

    def query_advance_discovery(self, cid: str, req: dict[str, Any]) -> dict[str, Any]:
        doc_types = [_doc_type(req)] if req.get("doc_type") not in (None, "") else DOC_TYPES
        return discovery(doc_types)

    # -- convenience API for the seeder, tests and the admin endpoints -------------------
    def set_status_register(self, company_id: str, register: dict[str, str | None]) -> None:
        """Give the company its own status register (label -> internal code, or None for a
        status without one): a company defines its statuses itself (§5)."""
        with self._lock:
            self._stores[str(company_id)].status_register = dict(register)

    def issue_bill(self, company_id: str, mk_id: str, *, fiscalized: bool = True) -> dict:
        """Issue a bill as Metakocka's users do: it gets its ``publish_ts`` (and, fiscalized,
        the tax authority's ``furs_eor``/``furs_zoi``); from then on it cannot be replaced."""
        with self._lock:
            comp = self._stores[str(company_id)]
            doc = comp.docs.get(int(mk_id))
            if doc is None or not str(doc["doc_type"]).startswith("sales_bill"):
                raise MetakockaError({"opr_code": "2", "opr_desc": f"no bill with mk_id {mk_id}"})
            doc["publish_ts"] = now_utc().astimezone().isoformat(timespec="seconds")
            if fiscalized:
                doc["furs_eor"] = f"{int(mk_id):08x}-0000-4000-8000-000000000000"
                doc["furs_zoi"] = f"{int(mk_id):032x}"
            return self.render(doc, {})

    def insert_document(
        self, company_id: str, payload: dict[str, Any], last_change: datetime | None = None
    ) -> dict[str, Any]:
        """put_document without mk_id; raises MetakockaError where MK would refuse."""
        body = {k: v for k, v in payload.items() if k != "mk_id"}
        return _ok(self.put_document, str(company_id), body, last_change)

    def replace_document(
        self,
        company_id: str,
        mk_id: str,
        payload: dict[str, Any],
        last_change: datetime | None = None,
    ) -> dict[str, Any]:
        """put_document with mk_id (full replace); raises MetakockaError on refusal."""
        return _ok(
            self.put_document, str(company_id), {**payload, "mk_id": str(mk_id)}, last_change
        )

    def edit_document(
        self,
        company_id: str,
        mk_id: str,
        changes: dict[str, Any],
        last_change: datetime | None = None,
    ) -> dict[str, Any]:
        """A user's edit in the MK app: change fields, recompute totals, bump last_change.
        Returns the document as get_document shows it."""
        with self._lock:
            comp = self._stores[str(company_id)]
            doc = None
            for doc_type in DOC_TYPES:
                try:
                    doc = self._find(comp, doc_type, mk_id)
                    break
                except MkError:
                    continue
            if doc is None:
                raise MetakockaError(
                    {
                        "opr_code": self.not_found_code,
                        "opr_desc": f"Cannot find document with mk_id {mk_id}",
                    }
                )
            try:
                new = self._apply_changes(
                    comp, doc, dict(changes), last_change or now_utc(), force=True
                )
            except MkError as exc:
                raise MetakockaError(exc.body) from None
            return self.render(new, {})

    def partner(self, company_id: str, mk_id: str) -> dict[str, Any]:
        """A partner of the company's register: ``mk_id``, ``count_code`` and its data."""
        with self._lock:
            record = self._stores[str(company_id)].partners[str(mk_id)]
            return {"mk_id": record["mk_id"], "count_code": record["count_code"], **record["data"]}

    def last_change(self, company_id: str, mk_id: str) -> datetime:
        """When a document last changed, as the ``last_change_from/_to`` filters see it. Tests
        only: Metakocka never returns this time (INTERNAL_FIELDS)."""
        with self._lock:
            doc = self._stores[str(company_id)].docs[int(mk_id)]
            return parse_timestamp(doc["last_change"], "last_change")

    def documents(self, company_id: str) -> list[dict[str, Any]]:
        """Every stored document of a company, by mk_id, as get_document shows it (quirks
        mode off), for tests that count duplicates in the sandbox's own store."""
        with self._lock:
            comp = self._stores[str(company_id)]
            return [self.render(comp.docs[i], {}, quirks=False) for i in sorted(comp.docs)]

    # -- rendering -----------------------------------------------------------------------
    def render(
        self, doc: dict[str, Any], req: dict[str, Any], *, quirks: bool | None = None
    ) -> dict[str, Any]:
        """A response copy of a stored document; honours show_product_detail, show_tax_factor
        and show_payment_detail."""
        detail = is_true(req.get("show_product_detail"))
        factor = is_true(req.get("show_tax_factor"))
        lines = []
        for line in doc["product_list"]:
            out = {k: v for k, v in line.items() if k not in ("mk_row_id", "type")}
            if detail:
                out["mk_row_id"], out["type"] = line["mk_row_id"], line["type"]
            if factor:
                out["tax_factor"] = format_decimal(TAX_RATES[line["tax"]])
            lines.append(out)
        rendered = {
            k: (
                lines
                if k == "product_list"
                else copy.deepcopy(v)
                if isinstance(v, dict | list)
                else v
            )
            for k, v in doc.items()
            if k not in INTERNAL_FIELDS
        }
        rendered = show_payments(rendered, req)
        return apply_quirks(rendered) if (self.quirks if quirks is None else quirks) else rendered

    # -- internals -----------------------------------------------------------------------
    def _find(self, comp: CompanyStore, doc_type: str, mk_id: Any) -> dict:
        text = str(mk_id).strip()
        doc = comp.docs.get(int(text)) if text.isdigit() else None
        if doc is None or doc["doc_type"] != doc_type:
            raise MkError(
                self.not_found_code, f"Cannot find document {doc_type} with doc_id {text}"
            )
        return doc

    def _by_buyer_order(self, comp: CompanyStore, buyer_order: str) -> dict:
        ids = comp.with_buyer_order("sales_order", buyer_order)
        if not ids:
            raise MkError(
                self.not_found_code, f"Cannot find sales order with buyer order '{buyer_order}'"
            )
        return comp.docs[ids[0]]

    def _by_count_code(self, comp: CompanyStore, doc_type: str, count_code: str) -> dict:
        for mk_id in reversed(comp.ids_by_type[doc_type]):  # newest wins (§4, credit notes)
            if comp.docs[mk_id]["count_code"] == count_code:
                return comp.docs[mk_id]
        raise MkError(
            self.not_found_code, f"Cannot find document {doc_type} with count_code {count_code}"
        )

    def _refuse_duplicate(self, comp: CompanyStore, doc_type: str, doc: dict) -> None:
        buyer_order = doc.get("buyer_order")
        dupes = comp.with_buyer_order(doc_type, buyer_order) if buyer_order else []
        if dupes:
            partner_id = doc["partner"].get("mk_id") or comp.docs[dupes[0]]["partner"]["mk_id"]
            raise MkError(
                "6",
                None,
                opr_code_app="7",
                opr_desc_app="Documents with some buyer order already exist",
                partner={"mk_id": partner_id},
                duplicate_doc_list=[
                    {"count_code": comp.docs[i]["count_code"], "mk_id": str(i)} for i in dupes
                ],
            )

    def _commit(
        self,
        comp: CompanyStore,
        doc: dict,
        existing: dict | None,
        new_partner: dict | None,
        new_products: list[dict],
        last_change: datetime | None,
    ) -> dict[str, Any]:
        for product in new_products:
            product["mk_id"] = self.new_id()
            product["count_code"] = str(comp.next_sequence("product"))
            comp.products[product["code"]] = product
            comp.product_by_id[product["mk_id"]] = product["code"]
            comp.product_by_id[product["count_code"]] = product["code"]
        for line in doc["product_list"]:
            if line.get("code") in comp.products:
                line["mk_id"] = comp.products[line["code"]]["mk_id"]
            line.setdefault("mk_row_id", self.new_id())
        if new_partner is not None:
            new_partner["mk_id"] = self.new_id()
            new_partner["count_code"] = str(comp.next_sequence("partner"))
            comp.partners[new_partner["mk_id"]] = new_partner
            comp.partner_by_count_code[new_partner["count_code"]] = new_partner["mk_id"]
            comp.partner_by_key[tuple(new_partner["key"])] = new_partner["mk_id"]
            doc["partner"]["mk_id"] = new_partner["mk_id"]
            doc["partner"]["count_code"] = new_partner["count_code"]
        moment = (last_change or now_utc()).astimezone(UTC).replace(microsecond=0)
        if existing is None:
            doc["mk_id"] = self.new_id()
            if "_count_prefix" in doc:
                prefix = doc.pop("_count_prefix")
                doc["count_code"] = f"{prefix}{comp.next_sequence(prefix)}"
            doc["created_ts"] = format_timestamp(moment)
        else:
            doc["mk_id"] = existing["mk_id"]
            doc["count_code"] = doc.get("count_code") or existing["count_code"]
            doc["created_ts"] = existing["created_ts"]
            comp.remove(int(existing["mk_id"]))
        doc.pop("_count_prefix", None)
        doc["last_change"] = format_timestamp(moment)
        self._store(comp, doc, int(moment.timestamp()))
        return {
            "opr_code": "0",
            "mk_id": doc["mk_id"],
            "count_code": doc["count_code"],
            "partner": {"mk_id": doc["partner"]["mk_id"]},
        }

    def _store(self, comp: CompanyStore, doc: dict, last_change: int) -> None:
        status = doc.get("status_code") or None
        meta = DocMeta(
            doc["doc_type"],
            last_change,
            parse_date(doc["doc_date"], "doc_date"),
            status,
            doc.get("buyer_order", ""),
        )
        comp.add(int(doc["mk_id"]), doc, meta)

    def _apply_changes(
        self,
        comp: CompanyStore,
        doc: dict,
        changes: dict[str, Any],
        last_change: datetime | None,
        force: bool = False,
    ) -> dict:
        """Re-run the put_document rules on the document with ``changes`` applied; store and
        bump last_change only when something differs (§6: values change only if different)."""
        payload = {
            k: v
            for k, v in doc.items()
            if not k.startswith("sum_") and k not in ("last_change", "created_ts", "status_desc")
        }
        payload.update(changes)
        payload["mk_id"] = doc["mk_id"]
        new, new_partner, new_products = build_document(
            self, comp, doc["doc_type"], payload, doc, keep_row_ids=True
        )
        if "count_code" in changes and changes["count_code"]:
            new["count_code"] = str(changes["count_code"])
        new.update({key: doc[key] for key in ISSUE_MARKS if key in doc})  # issued stays issued
        unchanged = {k: v for k, v in doc.items() if k not in ("last_change", "created_ts")}
        if not force and new_partner is None and not new_products and _same(new, unchanged):
            return doc
        self._commit(comp, new, doc, new_partner, new_products, last_change)
        return new

    # -- persistence (see metakocka_persist) ---------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything (documents, partners, products, counters) as JSON-ready data."""
        with self._lock:
            return state_to_json(self, self._stores)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetakockaState:
        """The inverse of ``to_json``; indexes are rebuilt."""
        return state_from_json(cls, data)


def _doc_type(req: dict[str, Any]) -> str:
    doc_type = req.get("doc_type")
    if doc_type in (None, ""):
        raise MkError("2", "Paramether 'doc_type' is missing")
    if doc_type not in DOC_TYPES:
        raise MkError("2", f"Unknown document type : {doc_type}")
    return str(doc_type)


def _same(new: dict, old: dict) -> bool:
    strip = ("last_change", "created_ts", "mk_row_id")
    return {k: v for k, v in new.items() if k not in strip} == {
        k: v for k, v in old.items() if k not in strip
    }


def _ok(op: Any, *args: Any) -> dict[str, Any]:
    try:
        return op(*args)
    except MkError as exc:
        raise MetakockaError(exc.body) from None
