"""`flask seed-volume`: realistic volume for the staff console and its benchmark.

Bulk inserts through SQLAlchemy Core (executemany in batches), bypassing the ORM: secret columns
get a few ciphertexts made once and reused (they decrypt fine, and encrypting a million values
would dominate the run), and `grant_sets` rows are written alongside their grants.
"""

from __future__ import annotations

import random
import secrets
import time
from datetime import timedelta

import click
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select

from app.current_platform import current_appid
from app.extensions import db
from app.models import (
    AttentionItem,
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    Encrypted,
    Grant,
    GrantChange,
    GrantSet,
    InboxEvent,
    Merchant,
)
from app.models.grants import appid_ref, sha256_hex
from app.services import clock
from app.vault import current_vault
from app.wechat import permissions

WORDS_ZH = "云栖 西湖 外滩 茶业 烘焙 书店 咖啡 花艺 体育 文创 酒店 果园 鲜花 旅行 宠物 教育".split()
WORDS_EN = (
    "Cloud Lake Bund Tea Bakery Books Coffee Flowers Sports Studio Hotel Orchard Travel".split()
)
SUFFIX = ["服务号", "订阅号", "小程序", "商城", "Official", "Mini", "Shop", "Club"]
EVENT_TYPES = [("authorized", 0.12), ("updateauthorized", 0.18), ("unauthorized", 0.04),
               ("component_verify_ticket", 0.66)]  # fmt: skip
ATTENTION_KINDS = ["session_mismatch", "unknown_authorizer", "missing_authorizer",
                   "unsolicited_authorization", "needs_reauthorization"]  # fmt: skip


def _plain(table: Table) -> Table:
    """A copy of `table` whose encrypted columns take ciphertext as is."""
    columns = [
        Column(c.name, Text if isinstance(c.type, Encrypted) else c.type, primary_key=c.primary_key)
        for c in table.columns
    ]
    return Table(table.name, MetaData(), *columns)


class Seeder:
    """Generates rows deterministically from a seed and inserts them in batches."""

    def __init__(self, *, accounts: int, merchants: int, events: int, seed: int, batch: int):
        self.accounts, self.merchants, self.events = accounts, merchants, events
        self.rng = random.Random(seed)
        self.batch = batch
        self.now = clock.now()
        self.tag = secrets.token_hex(3)
        vault = current_vault()
        self.cipher = {name: vault.encrypt(f"seed-{name}-{self.tag}") for name in
                       ("access", "refresh", "link", "xml")}  # fmt: skip
        self.sets = {t: [s.id for s in permissions.for_account_type(t)]
                     for t in permissions.ACCOUNT_TYPES}  # fmt: skip
        # Each set gets its own popularity, so coverage differs from set to set.
        self.popularity = {i: self.rng.uniform(0.05, 0.95) for ids in self.sets.values()
                           for i in ids}  # fmt: skip
        self.counts: dict[str, int] = {}

    def _write(self, table, rows: list[dict]) -> None:
        if rows:
            db.session.execute(insert(table), rows)
            self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)

    def _when(self, days: int) -> object:
        return self.now - timedelta(seconds=self.rng.randint(60, days * 86400))

    def run(self, echo=lambda message: None) -> dict[str, int]:
        started = time.monotonic()
        first_merchant = self.merchant_rows()
        echo(f"merchants: {self.merchants} ({time.monotonic() - started:.1f}s)")
        appids = self.account_rows(first_merchant)
        echo(f"accounts: {self.accounts} ({time.monotonic() - started:.1f}s)")
        self.event_rows(appids)
        echo(f"events: {self.events} ({time.monotonic() - started:.1f}s)")
        self.extra_rows(appids, first_merchant)
        db.session.commit()
        return self.counts

    def merchant_rows(self) -> int:
        start = (db.session.scalar(select(func.max(Merchant.id))) or 0) + 1
        for low in range(0, self.merchants, self.batch):
            rows = []
            for n in range(low, min(self.merchants, low + self.batch)):
                words = self.rng.sample(WORDS_ZH, 2)
                rows.append({"id": start + n, "name": f"{''.join(words)}有限公司 M{start + n:05d}",
                             "created_at": self._when(900)})  # fmt: skip
            self._write(Merchant.__table__, rows)
        db.session.flush()
        return start

    def account_rows(self, first_merchant: int) -> list[str]:
        start = (db.session.scalar(select(func.max(Authorizer.id))) or 0) + 1
        tokens_table = _plain(AuthorizerToken.__table__)
        appids = []
        for low in range(0, self.accounts, self.batch):
            auths, grants, sets, changes, tokens = [], [], [], [], []
            for n in range(low, min(self.accounts, low + self.batch)):
                row = self._account(start + n, first_merchant)
                appids.append(row["appid"])
                auths.append(row)
                grant, grant_sets = self._grant(row)
                grants.append(grant)
                sets += grant_sets
                changes.append(self._change(grant))
                tokens.append(self._token(row["id"]))
            for table, rows in ((Authorizer.__table__, auths), (Grant.__table__, grants),
                                (GrantSet.__table__, sets), (GrantChange.__table__, changes),
                                (tokens_table, tokens)):  # fmt: skip
                self._write(table, rows)
        return appids

    def _account(self, i: int, first_merchant: int) -> dict:
        rng = self.rng
        kind = "official_account" if rng.random() < 0.7 else "mini_program"
        name = rng.choice(WORDS_ZH) + rng.choice(WORDS_ZH) + rng.choice(SUFFIX)
        if rng.random() < 0.3:
            name = f"{rng.choice(WORDS_EN)} {rng.choice(WORDS_EN)} {rng.choice(SUFFIX)}"
        unassigned = rng.random() < 0.005
        merchant = None if unassigned else first_merchant + rng.randrange(self.merchants)
        return {
            "id": i, "appid": f"wx{self.tag}{i:010x}", "merchant_id": merchant,
            "account_type": kind, "nick_name": f"{name} {i}", "principal_name": f"{name}公司",
            "user_name": f"gh_{i:012x}", "service_type_id": 2 if kind == "official_account" else 0,
            "verify_type_id": 0 if rng.random() < 0.8 else -1, "account_status": 1,
            "created_at": self._when(720), "profile_fetched_at": self._when(30),
        }  # fmt: skip

    def _grant(self, account: dict) -> tuple[dict, list[dict]]:
        offered = self.sets[account["account_type"]]
        chosen = sorted(i for i in offered if self.rng.random() < self.popularity[i])
        status = "needs_reauthorization" if self.rng.random() < 0.04 else "active"
        at = account["created_at"]
        grant = {"id": account["id"], "authorizer_id": account["id"], "status": status,
                 "set_ids": chosen, "func_info": [], "authorized_at": at, "updated_at": at,
                 "confirmed_at": at}  # fmt: skip
        return grant, [{"authorizer_id": account["id"], "set_id": i} for i in chosen]

    def _change(self, grant: dict) -> dict:
        return {"grant_id": grant["id"], "at": grant["authorized_at"], "kind": "authorized",
                "set_ids": grant["set_ids"], "added": grant["set_ids"], "removed": [],
                "source": "redirect"}  # fmt: skip

    def _token(self, authorizer_id: int) -> dict:
        failing = self.rng.random() < 0.01
        return {
            "authorizer_id": authorizer_id, "access_token": self.cipher["access"],
            "access_expires_at": self.now + timedelta(seconds=self.rng.randint(-600, 7200)),
            "refresh_token": self.cipher["refresh"], "refresh_token_updated_at": self._when(90),
            "last_refresh_at": self._when(1), "consecutive_failures": 3 if failing else 0,
            "last_error_code": -1 if failing else None,
        }  # fmt: skip

    def event_rows(self, appids: list[str]) -> None:
        table = _plain(InboxEvent.__table__)
        names, weights = zip(*EVENT_TYPES, strict=True)
        for low in range(0, self.events, self.batch):
            rows = []
            for n in range(low, min(self.events, low + self.batch)):
                info_type = self.rng.choices(names, weights)[0]
                at = self._when(365)
                appid = None if info_type == "component_verify_ticket" else self.rng.choice(appids)
                failed = self.rng.random() < 0.0005
                fields = {"InfoType": info_type, "AppId": "wx3a1b5c7d9e0f2468"}
                if appid:
                    fields["AuthorizerAppid"] = appid
                rows.append({
                    "info_type": info_type, "component_appid": current_appid(),
                    "authorizer_appid": appid,
                    "create_time": int(at.timestamp()), "dedupe_key": f"seed:{self.tag}:{n}",
                    "fields": fields, "raw_xml": self.cipher["xml"], "received_at": at,
                    "processed_at": None if failed else at,
                    "outcome": "failed" if failed else "processed", "attempts": 1,
                    "error": "SeededFailure: example" if failed else None,
                })  # fmt: skip
            self._write(table, rows)

    def extra_rows(self, appids: list[str], first_merchant: int) -> None:
        """Attention items, sessions (open and completed), revocation tombstones, audit."""
        items = []
        for n, appid in enumerate(self.rng.sample(appids, min(len(appids), 40))):
            kind = ATTENTION_KINDS[n % len(ATTENTION_KINDS)]
            items.append({"kind": kind, "dedupe_key": f"{kind}:{appid_ref(appid)}:seed",
                          "authorizer_appid": appid, "appid_hash": appid_ref(appid),
                          "details": {"reason": "seeded"},
                          "created_at": self._when(20)})  # fmt: skip
        self._write(AttentionItem.__table__, items)
        sessions = _plain(AuthorizationSession.__table__)
        rows = []
        for n in range(max(10, self.accounts // 20)):
            pending = n % 10 == 0
            appid = None if pending else self.rng.choice(appids)
            requested = self.rng.sample(self.sets["official_account"], 6)
            rows.append({
                "public_id": f"s{self.tag}{n:08d}", "link_token": self.cipher["link"],
                "link_token_hash": sha256_hex(f"{self.tag}:{n}"),
                "merchant_id": first_merchant + self.rng.randrange(self.merchants),
                "auth_type": 3, "requested_set_ids": requested, "component_appid": current_appid(),
                "status": "open" if pending else "completed",
                "created_at": self._when(3 if pending else 300),
                "expires_at": self.now + timedelta(hours=12 if pending else -1),
                "authorizer_appid": appid, "granted_set_ids": None if pending else requested[:4],
            })  # fmt: skip
        self._write(sessions, rows)
        audit = [
            {
                "at": self._when(60),
                "action": "authorizer.purged",
                "actor": "system",
                "details": {"reason": "unauthorized"},
            }
            for _ in range(self.accounts // 200)
        ]
        self._write(AuditEntry.__table__, audit)
        audit = [{"at": self._when(365), "action": "grant.authorized", "actor": "system",
                   "merchant_id": first_merchant + self.rng.randrange(self.merchants),
                   "target_type": "authorizer", "target_id": str(self.rng.randrange(1, 1000)),
                   "details": {"source": "redirect"}}
                  for _ in range(self.accounts // 10)]  # fmt: skip
        self._write(AuditEntry.__table__, audit)


def seed_volume(*, accounts: int, merchants: int, events: int, seed: int = 1, batch: int = 5000,
                echo=lambda message: None) -> dict[str, int]:  # fmt: skip
    """Insert `accounts` authorizers across `merchants` merchants and `events` inbox events."""
    seeder = Seeder(accounts=accounts, merchants=max(1, merchants), events=events, seed=seed,
                    batch=batch)  # fmt: skip
    counts = seeder.run(echo)
    if db.engine.dialect.name == "postgresql":
        _reset_sequences()
    return counts


def _reset_sequences() -> None:
    """Explicit ids were inserted; move the PostgreSQL sequences past them."""
    for table in (Merchant.__table__, Authorizer.__table__, Grant.__table__):
        db.session.execute(
            select(func.setval(func.pg_get_serial_sequence(table.name, "id"),
                               select(func.max(table.c.id)).scalar_subquery()))
        )  # fmt: skip
    db.session.commit()


@click.command("seed-volume")
@click.option("--accounts", default=100_000, show_default=True)
@click.option("--merchants", default=5_000, show_default=True)
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--batch", default=5_000, show_default=True)
def seed_volume_command(accounts: int, merchants: int, events: int, seed: int, batch: int):
    """Create realistic volume for the staff console (accounts, grants, tokens, events)."""
    started = time.monotonic()
    counts = seed_volume(accounts=accounts, merchants=merchants, events=events, seed=seed,
                         batch=batch, echo=click.echo)  # fmt: skip
    for name, n in sorted(counts.items()):
        click.echo(f"  {name:<24} {n:>10,}")
    click.echo(f"Done in {time.monotonic() - started:.1f}s. Run ANALYZE for realistic plans.")
