"""The sync plan: what to do with every document, decided in bulk and without I/O.

Both sides and the link table are joined with hash lookups (`pd.Index.get_indexer`) and classified
with numpy masks, so a million documents per side take seconds; no step loops over documents in
Python except hashing the ids of *unlinked* Metakocka documents into their derived CRM ids.

Matching, most certain first:
1. a link row with both ids (the last successful sync) pairs the two documents;
2. an unlinked Metakocka document claims a CRM id through its `buyer_order` (written by us when the
   CRM created it) or through the id a Metakocka-born document gets in the CRM
   (`crm_id_for_metakocka_document`); a claim that is the only one on both ends pairs them, and
   the push step writes the missing link;
3. anything claimed twice, or claiming an already linked document, is a `conflict`: a create is
   never planned for a document that has a counterpart, because that is how duplicates are made.

Absence means deletion: pass links only for documents whose both sides were extracted.
"""

import hashlib

import numpy as np
import pandas as pd

from sync_pipeline.domain.document import CRM_ID_NAMESPACE

ACTIONS = (
    "create_in_metakocka",
    "update_in_metakocka",
    "create_in_crm",
    "update_in_crm",
    "unchanged",
    "conflict",
    "deleted_in_crm",
    "deleted_in_metakocka",
)
(
    CREATE_IN_METAKOCKA,
    UPDATE_IN_METAKOCKA,
    CREATE_IN_CRM,
    UPDATE_IN_CRM,
    UNCHANGED,
    CONFLICT,
    DELETED_IN_CRM,
    DELETED_IN_METAKOCKA,
) = range(len(ACTIONS))

PLAN_COLUMNS = (
    "action",
    "crm_document_id",
    "metakocka_id",
    "crm_hash",
    "metakocka_hash",
    "link_hash",
    "link_missing",
    "refresh_link",
    "reason",
)
"""Always present; `crm_document` / `metakocka_document` follow when the inputs carry `document`."""

KNOWN_ABSENT = "metakocka_absent"
"""Plan column: True on a create in Metakocka that the run's extraction proves is not there yet,
so its exporter may skip the first look-up (set by `sync/incremental.py`'s `mark_known_absent`)."""

NO_CHANGE = "no change since the last sync"
CONVERGED = "both sides changed to the same content since the last sync"
CHANGED_IN_CRM = "changed in the CRM since the last sync"
CHANGED_IN_METAKOCKA = "changed in Metakocka since the last sync"
CHANGED_ON_BOTH = "changed on both sides since the last sync"
GONE_FROM_METAKOCKA = "the linked Metakocka document no longer exists"
GONE_FROM_CRM = "the linked CRM document no longer exists"
ADOPTED_EQUAL = "adopted existing pair, same content"
ADOPTED_NEWER = "adopted existing pair, newer side wins"
ADOPTED_UNDECIDED = "adopted existing pair, both differ and neither side is newer"
NEW_IN_CRM = "only in the CRM"
NEW_IN_METAKOCKA = "only in Metakocka"
SOURCE_DELETED = "created from a CRM document that no longer exists"


def build_sync_plan(
    crm: pd.DataFrame, metakocka: pd.DataFrame, links: pd.DataFrame, organization_id: str
) -> pd.DataFrame:
    """Classify every document of one organization into one of `ACTIONS` (one row each).

    `crm`: crm_document_id, content_hash, updated_at [, document]. `metakocka`: metakocka_id,
    crm_document_id (decoded from buyer_order, may be null), content_hash, updated_at [, document].
    `links`: crm_document_id, metakocka_id (null = an unfinished create in Metakocka),
    content_hash (at the last successful sync, may be null). Ids must be unique per side.
    """
    sides = _Sides(crm, metakocka)
    link_crm = _objects(links["crm_document_id"])
    link_mk = _objects(links["metakocka_id"])
    complete = ~_is_none(link_crm) & ~_is_none(link_mk)
    linked, crm_linked, mk_link_crm = _linked_pairs(
        sides, link_crm[complete], link_mk[complete], _objects(links["content_hash"])[complete]
    )
    unlinked = _unlinked(sides, link_crm[complete], crm_linked, mk_link_crm, organization_id)
    return sides.assemble([linked, *unlinked])


class _Sides:
    """Both inputs as arrays, indexed by id, with a way to turn row positions into plan columns."""

    def __init__(self, crm: pd.DataFrame, metakocka: pd.DataFrame):
        self.crm, self.metakocka = crm, metakocka
        self.crm_ids = _objects(crm["crm_document_id"])
        self.mk_ids = _objects(metakocka["metakocka_id"])
        self.crm_index = _unique_index(self.crm_ids, "crm.crm_document_id")
        self.mk_index = _unique_index(self.mk_ids, "metakocka.metakocka_id")
        self.mk_claims = _objects(metakocka["crm_document_id"])
        self.crm_hash = _objects(crm["content_hash"])
        self.mk_hash = _objects(metakocka["content_hash"])

    def newer(self, c_pos: np.ndarray, m_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(CRM is newer, Metakocka is newer) for pairs of rows; unknown times are neither."""
        crm_time = _utc_times(self.crm["updated_at"].iloc[c_pos])
        mk_time = _utc_times(self.metakocka["updated_at"].iloc[m_pos])
        return crm_time > mk_time, mk_time > crm_time

    def assemble(self, blocks: list[dict]) -> pd.DataFrame:
        rows = {key: np.concatenate([block[key] for block in blocks]) for key in blocks[0]}
        c_pos, m_pos = rows.pop("c_pos"), rows.pop("m_pos")
        columns = {
            "action": np.asarray(ACTIONS, dtype=object)[rows.pop("action")],
            "crm_document_id": _ids_of(rows.pop("crm_document_id"), self.crm_ids, c_pos),
            "metakocka_id": _ids_of(rows.pop("metakocka_id"), self.mk_ids, m_pos),
            "crm_hash": _take(self.crm_hash, c_pos),
            "metakocka_hash": _take(self.mk_hash, m_pos),
            **rows,
        }
        if "document" in self.crm:
            columns["crm_document"] = _take(_objects(self.crm["document"]), c_pos)
        if "document" in self.metakocka:
            columns["metakocka_document"] = _take(_objects(self.metakocka["document"]), m_pos)
        # Each column keeps the array made for it (copy=False): the default copies them all
        # into one block while they are still held (7 MiB at 100,000 per side).
        return pd.DataFrame(
            {
                name: pd.Series(values, dtype=bool if values.dtype == bool else object, copy=False)
                for name, values in columns.items()
            },
            copy=False,
        )


def _linked_pairs(sides: _Sides, link_crm, link_mk, link_hash):
    """Rule 1: classify the pairs of complete links by which side changed since the last sync."""
    c_pos = sides.crm_index.get_indexer(link_crm)
    m_pos = sides.mk_index.get_indexer(link_mk)
    crm_linked = _mask(len(sides.crm_ids), c_pos[c_pos >= 0])
    mk_link_crm = np.full(len(sides.mk_ids), None, dtype=object)
    mk_link_crm[m_pos[m_pos >= 0]] = link_crm[m_pos >= 0]
    crm_hash, mk_hash = _take(sides.crm_hash, c_pos), _take(sides.mk_hash, m_pos)
    crm_present, mk_present = c_pos >= 0, m_pos >= 0
    both = crm_present & mk_present
    crm_changed = _differs(crm_hash, link_hash)
    mk_changed = _differs(mk_hash, link_hash)
    link_hash = np.where(crm_present & ~crm_changed, crm_hash, link_hash)  # equal: one object
    converged = both & crm_changed & mk_changed & ~_differs(crm_hash, mk_hash)
    outcomes = [
        (both & ~crm_changed & ~mk_changed, UNCHANGED, NO_CHANGE),
        (converged, UNCHANGED, CONVERGED),
        (both & crm_changed & ~mk_changed, UPDATE_IN_METAKOCKA, CHANGED_IN_CRM),
        (both & ~crm_changed & mk_changed, UPDATE_IN_CRM, CHANGED_IN_METAKOCKA),
        (both & crm_changed & mk_changed & ~converged, CONFLICT, CHANGED_ON_BOTH),
        (crm_present & ~mk_present, DELETED_IN_METAKOCKA, GONE_FROM_METAKOCKA),
        (~crm_present & mk_present, DELETED_IN_CRM, GONE_FROM_CRM),
    ]
    keep = crm_present | mk_present
    action = np.select([mask for mask, _, _ in outcomes], [code for _, code, _ in outcomes], -1)
    reason_codes = np.select([mask for mask, _, _ in outcomes], np.arange(len(outcomes)), -1)
    reasons = np.asarray([reason for _, _, reason in outcomes], dtype=object)
    block = {
        "action": action[keep].astype(np.int8),
        "crm_document_id": link_crm[keep],
        "metakocka_id": link_mk[keep],
        "c_pos": c_pos[keep],
        "m_pos": m_pos[keep],
        "link_hash": link_hash[keep],
        "link_missing": np.zeros(int(keep.sum()), dtype=bool),
        "refresh_link": converged[keep],
        "reason": reasons[reason_codes[keep]],
    }
    return block, crm_linked, mk_link_crm


def _unlinked(sides: _Sides, linked_crm_ids, crm_linked, mk_link_crm, organization_id: str):
    """Rules 2 and 3: match, create, or hold back the documents no complete link covers.

    `mk_link_crm` holds, per Metakocka row, the CRM id it is linked to (None when unlinked).
    """
    mk_free = np.flatnonzero(_is_none(mk_link_crm))
    crm_free = np.flatnonzero(~crm_linked)
    derived = derived_crm_ids(organization_id, sides.mk_ids[mk_free])
    claims = _Claims.collect(sides, mk_free, derived, linked_crm_ids, mk_link_crm, crm_linked)
    clean = claims.clean()
    pair = clean & (claims.target_pos >= 0)
    ghost = clean & (claims.target_pos < 0)

    claimed_mk = _mask(len(sides.mk_ids), claims.mk_pos)
    claimed_crm = _mask(len(sides.crm_ids), claims.crm_targets())
    blocks = [
        _pairs(sides, claims.target_pos[pair], claims.mk_pos[pair]),
        _block(
            DELETED_IN_CRM,
            SOURCE_DELETED,
            crm_ids=claims.target[ghost],
            m_pos=claims.mk_pos[ghost],
        ),
    ]
    new_mk = mk_free[~claimed_mk[mk_free]]
    blocks.append(
        _block(
            CREATE_IN_CRM,
            NEW_IN_METAKOCKA,
            crm_ids=derived[~claimed_mk[mk_free]],
            m_pos=new_mk,
        )
    )
    new_crm = crm_free[~claimed_crm[crm_free]]
    blocks.append(_block(CREATE_IN_METAKOCKA, NEW_IN_CRM, c_pos=new_crm))
    blocks.extend(claims.conflicts(sides, clean, crm_linked))
    return blocks


class _Claims:
    """Edges "unlinked Metakocka document -> CRM id it claims", plus the claims of linked Metakocka
    documents on unlinked CRM documents (which only make those CRM documents ambiguous)."""

    def __init__(
        self,
        mk_pos,
        target,
        target_pos,
        target_linked,
        mk_degree,
        target_degree,
        crm_claims_by_linked,
    ):
        self.mk_pos = mk_pos
        self.target = target
        self.target_pos = target_pos
        self.target_linked = target_linked
        self.mk_degree = mk_degree
        self.target_degree = target_degree
        self.crm_claims_by_linked = crm_claims_by_linked

    @classmethod
    def collect(cls, sides: _Sides, mk_free, derived, linked_crm_ids, mk_link_crm, crm_linked):
        by_ref = sides.mk_claims[mk_free]
        has_ref = ~_is_none(by_ref)
        derived_pos = sides.crm_index.get_indexer(derived)
        by_id = (derived_pos >= 0) & ~(has_ref & (by_ref == derived))
        mk_pos = np.concatenate([mk_free[has_ref], mk_free[by_id]])
        target = np.concatenate([by_ref[has_ref], derived[by_id]])
        target_pos = np.concatenate(
            [sides.crm_index.get_indexer(by_ref[has_ref]), derived_pos[by_id]]
        )

        # A linked Metakocka document whose buyer_order names another, unlinked CRM document.
        linked = ~_is_none(mk_link_crm)
        stray = linked & ~_is_none(sides.mk_claims) & (sides.mk_claims != mk_link_crm)
        stray_pos = sides.crm_index.get_indexer(sides.mk_claims[stray])
        stray_pos = stray_pos[stray_pos >= 0]
        stray_pos = stray_pos[~crm_linked[stray_pos]]

        # Present CRM ids are counted by position; absent ones (deleted in the CRM) by value.
        present, absent = target_pos >= 0, target_pos < 0
        target_linked = np.zeros(len(target), dtype=bool)
        target_linked[present] = crm_linked[target_pos[present]]
        target_degree = np.zeros(len(target), dtype=np.int64)
        claims_per_crm = np.bincount(
            np.concatenate([target_pos[present], stray_pos]), minlength=len(sides.crm_ids)
        )
        target_degree[present] = claims_per_crm[target_pos[present]]
        if absent.any():
            target_linked[absent] = pd.Index(target[absent]).isin(linked_crm_ids)
            codes, _ = pd.factorize(target[absent])
            target_degree[absent] = np.bincount(codes)[codes]
        target_degree += target_linked
        mk_degree = np.bincount(mk_pos, minlength=len(sides.mk_ids))[mk_pos]
        return cls(mk_pos, target, target_pos, target_linked, mk_degree, target_degree, stray_pos)

    def clean(self) -> np.ndarray:
        """Claims that are the only one of their Metakocka document and on their CRM id."""
        return (self.mk_degree == 1) & (self.target_degree == 1) & ~self.target_linked

    def crm_targets(self) -> np.ndarray:
        """Positions of CRM documents claimed by anyone (they must not be created again)."""
        present = self.target_pos[self.target_pos >= 0]
        return np.concatenate([present, self.crm_claims_by_linked])

    def conflicts(self, sides: _Sides, clean: np.ndarray, crm_linked: np.ndarray) -> list[dict]:
        """One conflict row per document in a murky claim (linked CRM documents have their row)."""
        murky = ~clean
        mk_rows = pd.DataFrame(
            {"m_pos": self.mk_pos[murky], "reason": _mk_conflict_reasons(self, murky)}
        ).drop_duplicates("m_pos")
        claimed = np.concatenate(
            [self.target_pos[murky & (self.target_pos >= 0)], self.crm_claims_by_linked]
        )
        crm_pos, claim_count = np.unique(claimed, return_counts=True)
        unlinked = ~crm_linked[crm_pos]
        crm_pos, claim_count = crm_pos[unlinked], claim_count[unlinked]
        crm_reasons = (
            "ambiguous: claimed by "
            + claim_count.astype(str).astype(object)
            + " Metakocka document(s) that do not pair one-to-one"
        )
        mk_pos = mk_rows["m_pos"].to_numpy()
        return [
            _block(CONFLICT, mk_rows["reason"].to_numpy(dtype=object), m_pos=mk_pos),
            _block(CONFLICT, crm_reasons, c_pos=crm_pos),
        ]


def _mk_conflict_reasons(claims: _Claims, murky: np.ndarray) -> np.ndarray:
    target = claims.target[murky].astype(str).astype(object)
    why = np.select(
        [claims.mk_degree[murky] > 1, claims.target_linked[murky]],
        [
            ", and to another CRM document as well",
            ", which is linked to another Metakocka document",
        ],
        ", which other Metakocka documents claim too",
    ).astype(object)
    return "ambiguous: points to CRM document " + target + why


def _pairs(sides: _Sides, c_pos: np.ndarray, m_pos: np.ndarray) -> dict:
    """Rule 2: matched without a link. Same content is in sync; otherwise the newer side wins."""
    same = ~_differs(sides.crm_hash[c_pos], sides.mk_hash[m_pos])
    crm_newer, mk_newer = sides.newer(c_pos, m_pos)
    action = np.select(
        [same, crm_newer, mk_newer], [UNCHANGED, UPDATE_IN_METAKOCKA, UPDATE_IN_CRM], CONFLICT
    )
    reason = np.select(
        [same, crm_newer | mk_newer], [ADOPTED_EQUAL, ADOPTED_NEWER], ADOPTED_UNDECIDED
    ).astype(object)
    block = _block(action, reason, c_pos=c_pos, m_pos=m_pos)
    block["link_missing"][:] = True
    return block


def _block(action, reason, *, c_pos=None, m_pos=None, crm_ids=None) -> dict:
    """Plan rows in the shape `_Sides.assemble` concatenates.

    A row names its documents by position in the inputs (-1: none); an explicit CRM id is only for
    a CRM document that is not in the input (deleted, or still to be created).
    """
    size = len(next(a for a in (c_pos, m_pos, crm_ids) if a is not None))
    missing_pos = np.full(size, -1, dtype=np.int64)
    return {
        "action": np.broadcast_to(np.asarray(action, dtype=np.int8), (size,)),
        "crm_document_id": crm_ids if crm_ids is not None else np.full(size, None, dtype=object),
        "metakocka_id": np.full(size, None, dtype=object),
        "c_pos": np.asarray(c_pos, dtype=np.int64) if c_pos is not None else missing_pos,
        "m_pos": np.asarray(m_pos, dtype=np.int64) if m_pos is not None else missing_pos,
        "link_hash": np.full(size, None, dtype=object),
        "link_missing": np.zeros(size, dtype=bool),
        "refresh_link": np.zeros(size, dtype=bool),
        "reason": np.broadcast_to(np.asarray(reason, dtype=object), (size,)),
    }


def derived_crm_ids(organization_id: str, metakocka_ids: np.ndarray) -> np.ndarray:
    """`crm_id_for_metakocka_document` for many ids at once (the same uuid5, ~5x faster).

    Only the SHA-1 of each id runs in Python; the version bits and the hex text of a million uuids
    are written on one byte array, and split into strings in one call.
    """
    prefix = CRM_ID_NAMESPACE.bytes + f"{organization_id}:metakocka:".encode()
    sha1 = hashlib.sha1
    digests = b"".join([sha1(prefix + mk_id.encode()).digest()[:16] for mk_id in metakocka_ids])
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    text = np.full((len(raw), 37), ord("-"), dtype=np.uint8)  # 36 characters and a newline
    text[:, _UUID_HEX_COLUMNS] = _HEX_DIGITS[nibbles]
    text[:, 36] = ord("\n")
    return np.array(text.tobytes().decode("ascii").split("\n")[:-1], dtype=object)


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_HEX_COLUMNS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def _utc_times(column: pd.Series) -> np.ndarray:
    return pd.to_datetime(column, utc=True).to_numpy(dtype="datetime64[ns]")


def _objects(column: pd.Series) -> np.ndarray:
    """A column as an object array with None for missing values (one representation of null)."""
    return column.to_numpy(dtype=object, na_value=None)


def _unique_index(ids: np.ndarray, name: str) -> pd.Index:
    index = pd.Index(ids, dtype=object)
    if not index.is_unique:
        raise ValueError(f"{name} must be unique: {index[index.duplicated()][:3].tolist()}")
    return index


def _ids_of(explicit: np.ndarray, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The id of the document at that position, else the explicit id. (The same value where
    both are there: a link's id is the document's; the document's own object is kept, so a
    million links' copies of the ids are not.)"""
    at = positions >= 0
    explicit[at] = ids[positions[at]]
    return explicit


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values[positions], with None where the position is -1 (no such document)."""
    out = values[positions] if len(values) else np.full(len(positions), None, dtype=object)
    out[positions < 0] = None
    return out


def _mask(size: int, positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    return mask


def _differs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Elementwise "not the same hash"; a missing hash differs from everything, even another."""
    return (left != right) | _is_none(left)


def _is_none(values: np.ndarray) -> np.ndarray:
    """Null test for arrays made by `_objects` (where every missing value is None); fast."""
    return np.equal(values, None)
