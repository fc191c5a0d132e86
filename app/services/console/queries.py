"""Read-side queries of the staff console: the authorizations table, its export, one account.

Everything here only reads. Filters are plain arguments (an `AccountFilter`), so the views,
the CSV export and the benchmark all run the very same SQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, exists, false, func, or_, select, true, union

from app.extensions import db
from app.models import (
    AttentionItem,
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    Grant,
    GrantChange,
    GrantSet,
    GrantStatus,
    InboxEvent,
    Merchant,
)

STATUSES = ("active", "needs_reauthorization", "unassigned")
ACCOUNT_TYPES = ("official_account", "mini_program")
SORTS = {
    "name": Authorizer.nick_name,
    "appid": Authorizer.appid,
    "merchant": Authorizer.merchant_id,
    "status": Grant.status,
    "authorized": Grant.authorized_at,
    "created": Authorizer.id,
}
DEFAULT_SORT = "-created"
PER_PAGE_CHOICES = (25, 50, 100)
MAX_SEARCH = 64
# Counting stops here ("10,000+"): an exact count of a broad filter over 100,000 accounts would
# cost more than the page itself; past it, the pager offers "next" while pages are full.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class AccountFilter:
    """What the staff asked to see in the authorizations table."""

    status: str = ""
    account_type: str = ""
    merchant_id: int | None = None
    set_id: int | None = None
    set_mode: str = "granted"  # granted | missing
    attention: bool = False
    q: str = ""
    component_appid: str = ""  # one platform's accounts (#16); empty: every platform's
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = 50
    # A selection ticked on the list (bulk actions, export): only these, and still the filters.
    ids: tuple[int, ...] = ()

    def with_(self, **changes) -> AccountFilter:
        return replace(self, **changes)

    @property
    def sort_key(self) -> str:
        key = self.sort.lstrip("-")
        return key if key in SORTS else DEFAULT_SORT.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-") if self.sort.lstrip("-") in SORTS else True


@dataclass
class Page:
    """One page of rows plus what the pager needs."""

    rows: list
    total: int
    page: int
    per_page: int
    capped: bool = False  # total is a lower bound (COUNT_CAP reached)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        full = len(self.rows) == self.per_page
        return self.page < self.pages or (self.capped and full)

    @property
    def first_index(self) -> int:
        return 0 if not self.total else (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.page * self.per_page)


def open_attention_for(appid_column, component_appid_column=None):
    """EXISTS: an unresolved attention item names this appid (on this platform, when given)."""
    same_platform = (
        AttentionItem.component_appid == component_appid_column
        if component_appid_column is not None
        else true()
    )
    return exists().where(
        AttentionItem.authorizer_appid == appid_column,
        same_platform,
        AttentionItem.resolved_at.is_(None),
    )


def needs_attention():
    """The SQL condition behind the "needs attention" filter: a union of small indexed sets."""
    flagged = union(
        select(Grant.authorizer_id).where(Grant.status == GrantStatus.NEEDS_REAUTHORIZATION),
        select(AuthorizerToken.authorizer_id).where(AuthorizerToken.consecutive_failures > 0),
        select(Authorizer.id).where(Authorizer.merchant_id.is_(None)),
        select(Authorizer.id)
        .join(
            AttentionItem,
            and_(
                AttentionItem.authorizer_appid == Authorizer.appid,
                AttentionItem.component_appid == Authorizer.component_appid,
            ),
        )
        .where(AttentionItem.resolved_at.is_(None)),
    )
    return Authorizer.id.in_(select(flagged.subquery().c[0]))


def _conditions(f: AccountFilter) -> list:
    conditions = []
    if f.status == "unassigned":
        conditions.append(Authorizer.merchant_id.is_(None))
    elif f.status in ("active", "needs_reauthorization"):
        conditions.append(Grant.status == GrantStatus(f.status))
    if f.account_type in ACCOUNT_TYPES:
        conditions.append(Authorizer.account_type == f.account_type)
    if f.merchant_id:
        conditions.append(Authorizer.merchant_id == f.merchant_id)
    if f.component_appid:
        conditions.append(Authorizer.component_appid == f.component_appid)
    if f.set_id:
        granted = select(GrantSet.authorizer_id).where(GrantSet.set_id == f.set_id)
        in_set = Authorizer.id.in_(granted)
        conditions.append(~in_set if f.set_mode == "missing" else in_set)
    if f.attention:
        conditions.append(needs_attention())
    if f.ids:
        conditions.append(Authorizer.id.in_(f.ids))
    q = f.q.strip()[:MAX_SEARCH]
    if q:
        conditions.append(_search(q))
    return conditions


def _search(q: str):
    """An appid (prefix, via its unique index) or a fragment of the account's name."""
    if q.isascii() and q.lower().startswith("wx") and " " not in q:
        return and_(Authorizer.appid >= q, Authorizer.appid < q + "\U0010ffff")
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if db.engine.dialect.name == "sqlite":  # SQLite's LIKE already ignores ASCII case
        return Authorizer.nick_name.like(pattern, escape="\\")
    return Authorizer.nick_name.ilike(pattern, escape="\\")


def _columns():
    return (
        Authorizer.id,
        Authorizer.component_appid,
        Authorizer.appid,
        Authorizer.nick_name,
        Authorizer.account_type,
        Authorizer.principal_name,
        Authorizer.merchant_id,
        Merchant.name.label("merchant_name"),
        Grant.status,
        Grant.set_ids,
        Grant.authorized_at,
        Grant.updated_at,
        AuthorizerToken.consecutive_failures,
        AuthorizerToken.access_expires_at,
        AuthorizerToken.last_error_code,
    )


def _joined(query):
    return (
        query.outerjoin(Grant, Grant.authorizer_id == Authorizer.id)
        .outerjoin(Merchant, Merchant.id == Authorizer.merchant_id)
        .outerjoin(AuthorizerToken, AuthorizerToken.authorizer_id == Authorizer.id)
    )


def _ordered(query, f: AccountFilter):
    column = SORTS[f.sort_key]
    primary = column.desc() if f.descending else column.asc()
    tiebreak = Authorizer.id.desc() if f.descending else Authorizer.id.asc()
    return (
        query.order_by(primary, tiebreak)
        if column is not Authorizer.id
        else query.order_by(primary)
    )


def accounts_query(f: AccountFilter):
    """The filtered, sorted SELECT behind the table and the export (no paging)."""
    return _ordered(_joined(select(*_columns()).select_from(Authorizer)).where(*_conditions(f)), f)


def _ids_query(f: AccountFilter):
    """Only the ids, with only the joins the filters and the sort need (cheap to offset)."""
    query = select(Authorizer.id).select_from(Authorizer)
    if f.status in ("active", "needs_reauthorization") or f.sort_key in ("status", "authorized"):
        query = query.outerjoin(Grant, Grant.authorizer_id == Authorizer.id)
    return _ordered(query.where(*_conditions(f)), f)


def matching_ids(f: AccountFilter, limit: int) -> list[int]:
    """The ids of the matching accounts in list order, at most `limit` of them."""
    return list(db.session.scalars(_ids_query(f).limit(limit)))


def count_accounts(f: AccountFilter, cap: int | None = None) -> int:
    """How many accounts match (at most `cap`, when given)."""
    query = _ids_query(f).order_by(None)
    if cap is not None:
        query = query.limit(cap + 1)
    return db.session.scalar(select(func.count()).select_from(query.subquery()))


def list_accounts(f: AccountFilter) -> Page:
    """One page of the authorizations table (ids first, then their rows: a deferred join)."""
    total = count_accounts(f, cap=COUNT_CAP)
    capped = total > COUNT_CAP
    last = -(-total // f.per_page) if not capped else f.page
    page = max(1, min(f.page, max(1, last)))
    ids = list(db.session.scalars(_ids_query(f).limit(f.per_page).offset((page - 1) * f.per_page)))
    rows_query = _ordered(_joined(select(*_columns()).select_from(Authorizer)), f)
    rows = db.session.execute(rows_query.where(Authorizer.id.in_(ids))).all() if ids else []
    total = min(total, COUNT_CAP)
    return Page(rows=_attention_flags(rows), total=total, page=page, per_page=f.per_page,
                capped=capped)  # fmt: skip


def _attention_flags(rows) -> list[dict]:
    """Rows as dicts with a `needs_attention` flag (one query for the page's open items)."""
    appids = [row.appid for row in rows]
    flagged = set()
    if appids:
        flagged = set(
            db.session.execute(
                select(AttentionItem.component_appid, AttentionItem.authorizer_appid).where(
                    AttentionItem.authorizer_appid.in_(appids), AttentionItem.resolved_at.is_(None)
                )
            ).tuples()
        )
    result = []
    for row in rows:
        item = row._asdict()
        item["needs_attention"] = bool(
            (row.component_appid, row.appid) in flagged
            or row.merchant_id is None
            or row.status is GrantStatus.NEEDS_REAUTHORIZATION
            or (row.consecutive_failures or 0) > 0
        )
        result.append(item)
    return result


CSV_HEADER = (
    "appid", "name", "account_type", "principal_name", "merchant_id", "merchant_name",
    "status", "permission_set_ids", "authorized_at", "token_failures", "token_expires_at",
    "component_appid",
)  # fmt: skip


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_rows(f: AccountFilter, batch: int = 1000) -> Iterator[str]:
    """CSV text for every matching account, produced in chunks (constant memory)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    query = accounts_query(f).execution_options(yield_per=batch, stream_results=True)
    result = db.session.execute(query)
    for n, row in enumerate(result, 1):
        writer.writerow(_csv_row(row))
        if n % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_row(row) -> list:
    status = row.status.value if row.status else "revoked"
    return [
        row.appid, _csv_safe(row.nick_name), row.account_type or "", _csv_safe(row.principal_name),
        row.merchant_id or "", _csv_safe(row.merchant_name), status,
        " ".join(str(i) for i in sorted(row.set_ids or [])), _iso(row.authorized_at),
        row.consecutive_failures or 0, _iso(row.access_expires_at), row.component_appid,
    ]  # fmt: skip


def _csv_safe(value: str | None) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    value = value or ""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- one account ------------------------------------------------------------------------------


def account_sessions(authorizer: Authorizer, limit: int = 50) -> list[AuthorizationSession]:
    """Sessions that produced or targeted this account (on its platform): requested versus
    granted."""
    appid = authorizer.appid
    query = (
        select(AuthorizationSession)
        .where(
            AuthorizationSession.component_appid == authorizer.component_appid,
            or_(
                AuthorizationSession.authorizer_appid == appid,
                AuthorizationSession.biz_appid == appid,
            ),
        )
        .order_by(AuthorizationSession.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def account_changes(authorizer: Authorizer) -> list[GrantChange]:
    """Grant history, newest first."""
    if authorizer.grant is None:
        return []
    query = select(GrantChange).where(GrantChange.grant_id == authorizer.grant.id)
    return list(db.session.scalars(query.order_by(GrantChange.id.desc()).limit(200)))


def account_events(
    authorizer: Authorizer, before_id: int | None = None, limit: int = 25
) -> list[InboxEvent]:
    """The account's pushes (its platform's), newest first, paged by id (fields are already
    redacted)."""
    query = select(InboxEvent).where(
        InboxEvent.component_appid == authorizer.component_appid,
        InboxEvent.authorizer_appid == authorizer.appid,
    )
    if before_id:
        query = query.where(InboxEvent.id < before_id)
    return list(db.session.scalars(query.order_by(InboxEvent.id.desc()).limit(limit)))


def account_attention(authorizer: Authorizer) -> list[AttentionItem]:
    """Attention items about this account (on its platform), open first."""
    query = select(AttentionItem).where(
        AttentionItem.component_appid == authorizer.component_appid,
        AttentionItem.authorizer_appid == authorizer.appid,
    )
    query = query.order_by(AttentionItem.resolved_at.is_not(None), AttentionItem.id.desc())
    return list(db.session.scalars(query.limit(50)))


def account_audit(authorizer: Authorizer, limit: int = 50) -> list[AuditEntry]:
    """Audit entries about this account, never a deleted account's.

    Entries name the account by id. Ids are not reused since 0007_stable_ids, but a database from
    before it may hold a purged account's entries under this very id: whatever was written up to
    the last purge tombstone of this id belongs to an account that no longer exists."""
    about_this_id = and_(
        AuditEntry.target_type == "authorizer", AuditEntry.target_id == str(authorizer.id)
    )
    last_purge = (
        select(func.max(AuditEntry.id))
        .where(about_this_id, AuditEntry.action == "authorizer.purged")
        .scalar_subquery()
    )
    query = select(AuditEntry).where(about_this_id, AuditEntry.id > func.coalesce(last_purge, 0))
    return list(db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def merchant_choices(ids) -> dict[int, str]:
    """Merchant names by id (for labels of filters and rows)."""
    ids = [i for i in ids if i]
    if not ids:
        return {}
    query = select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids))
    return dict(db.session.execute(query).all())


def search_merchants(q: str, limit: int = 20) -> list[Merchant]:
    """Merchants by id or name fragment (for assigning an account)."""
    q = q.strip()[:MAX_SEARCH]
    if not q:
        return []
    condition = Merchant.id == int(q) if q.isdigit() else Merchant.name.ilike(f"%{q}%")
    query = select(Merchant).where(condition).order_by(Merchant.name).limit(limit)
    return list(db.session.scalars(query))


# --- audit log ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Filters of the audit log page."""

    actor: str = ""
    merchant_id: int | None = None
    action: str = ""
    date_from: datetime | None = None
    date_to: datetime | None = None
    before_id: int | None = None
    per_page: int = 50


def list_audit(f: AuditFilter) -> tuple[list[AuditEntry], int | None]:
    """A page of audit entries (newest first) and the id to continue from, if any."""
    conditions = [
        AuditEntry.actor.ilike(f"%{f.actor.strip()}%") if f.actor.strip() else true(),
        AuditEntry.merchant_id == f.merchant_id if f.merchant_id else true(),
        _action_condition(f.action),
        AuditEntry.at >= f.date_from if f.date_from else true(),
        AuditEntry.at < f.date_to if f.date_to else true(),
        _before(f.before_id),
    ]
    # Time order (entries can be written with an earlier `at` than rows inserted before them).
    query = select(AuditEntry).where(and_(*conditions))
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    rows = list(db.session.scalars(query.limit(f.per_page + 1)))
    more = len(rows) > f.per_page
    rows = rows[: f.per_page]
    return rows, (rows[-1].id if more and rows else None)


def _before(before_id: int | None):
    """Keyset condition: entries after the cursor entry in (at, id) descending order."""
    if not before_id:
        return true()
    cursor_at = db.session.scalar(select(AuditEntry.at).where(AuditEntry.id == before_id))
    if cursor_at is None:
        return AuditEntry.id < before_id
    return or_(
        AuditEntry.at < cursor_at, and_(AuditEntry.at == cursor_at, AuditEntry.id < before_id)
    )


def _action_condition(action: str):
    action = action.strip()
    if not action:
        return true()
    if action.endswith("*") or action.endswith("."):
        return AuditEntry.action.startswith(action.rstrip("*"))
    return AuditEntry.action == action if action else false()


def known_actions() -> list[str]:
    """Distinct audit actions (for the filter's suggestions)."""
    query = select(AuditEntry.action).group_by(AuditEntry.action).order_by(AuditEntry.action)
    return list(db.session.scalars(query.limit(200)))


# --- lists by platform (#16) --------------------------------------------------------------------


def open_attention_items(
    kind: str = "", component_appid: str = "", limit: int = 200
) -> list[AttentionItem]:
    """Open attention items, newest first: of one kind and one platform, when given."""
    query = select(AttentionItem).where(AttentionItem.resolved_at.is_(None))
    if kind:
        query = query.where(AttentionItem.kind == kind)
    if component_appid:
        query = query.where(AttentionItem.component_appid == component_appid)
    return list(db.session.scalars(query.order_by(AttentionItem.created_at.desc()).limit(limit)))


def account_for(component_appid: str | None, appid: str | None) -> Authorizer | None:
    """The account an event or attention item names: (platform, appid), unique per platform."""
    if not appid or not component_appid:
        return None
    return db.session.scalar(
        select(Authorizer).where(
            Authorizer.component_appid == component_appid, Authorizer.appid == appid
        )
    )
