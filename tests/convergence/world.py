"""The convergence test's machinery: schedules, a push relay, a runner, the invariant, a shrinker.

A schedule is a list of steps (plain tuples, printable and replayable) generated from a seed.
The runner plays it against the real portal and the real sandbox over HTTP, then brings the
system to quiescence (faults cleared, pushes flushed, the portal's jobs run until idle) and
compares what Grantdesk holds with what WeChat (the sandbox) holds.

Two third-party platforms serve the world (issue #16): the default one and platform B, both
pushing through the relay to the one event URL. Every step names the platform it acts on, and
one account may be authorized to both: the invariant holds per (platform, account).
"""

from __future__ import annotations

import html
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from sqlalchemy import func, select
from sqlalchemy.orm.exc import ObjectDeletedError

from app import jobs
from app.current_platform import account_ref, using
from app.extensions import db, limiter
from app.models import (
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    GrantStatus,
    InboxEvent,
    Merchant,
)
from app.services import clock
from app.services.authorization import sessions
from app.services.platform import platforms
from app.wechat.links import parse_authorization_url

LINK = re.compile(r'id="pc-link" href="([^"]+)"')
SETTLED = ("processed", "ignored")
# The APIs a schedule may make fail for a few calls (errcode -1 or a transport fault).
FAULTY_ENDPOINTS = (
    "api_query_auth",
    "api_get_authorizer_info",
    "api_authorizer_token",
    "api_component_token",
)
# Transport faults of the sandbox (where it has them): what each one is armed with. A short
# hang then a dropped connection stands for a timeout (the client's own waits ten seconds).
TRANSPORT_FAULTS = {
    "http_status": (500, 502, 503),
    "reset": (True,),
    "non_json": (True,),
    "timeout": (0.3,),
}
PUSH_FAULTS = ("duplicate", "delay", "out_of_order")
# pc: the browser comes back at once; late: after the push was delivered; phone: never;
# race: the browser comes back while the push is being delivered; reload: the page was
# reloaded after the QR code was shown, and the first code is the one consented to.
MODES = ("pc", "late", "phone", "race", "reload")
WORKER_TICK_SECONDS = 61  # the `jobs` step: a minute passes and the worker runs
PACE_SECONDS = 1  # a person's pace: no two of their actions share a push's CreateTime second
QUIESCENCE_ROUNDS = 12
ROUND_SECONDS = 301  # longer than an inbox claim and a refresh token's 5-minute transition
LATER_SECONDS = 2 * 3600  # then every access token is due: each refresh token gets used
USER_STEPS = ("authorize", "update_link", "update_assistant", "revoke")
# Platform B, beside the default one (its keys are the sandbox's and the portal's alike).
PLATFORM_B = {
    "appid": "wx5b7c9d1e3f5a7b9c",
    "secret": "platformbsecret0123456789",
    "token": "platformbtoken",
    "encoding_aes_key": "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
}


# --- schedules --------------------------------------------------------------------------------


def generate(
    seed: int,
    accounts: list[dict],
    transport_faults: tuple[str, ...] = (),
    platform_appids: tuple[str, ...] = (),
) -> list:
    """A random, seeded schedule over one or two of the sandbox's fresh accounts, each step on
    one of `platform_appids` (an account may be authorized to several).

    The generator tracks what WeChat will hold so most steps make sense; every step still
    copes at run time with a world where it does not apply (shrinking removes steps)."""
    rng = random.Random(seed)
    chosen = rng.sample(accounts, rng.choice((1, 1, 2)))
    authorized = {(p, a["appid"]): False for a in chosen for p in platform_appids}
    steps: list[tuple] = []
    for _ in range(rng.randint(3, 12)):
        account = rng.choice(chosen)
        platform, appid = rng.choice(platform_appids), account["appid"]
        sets = tuple(sorted(rng.sample(account["offered"], rng.randint(1, 3))))
        roll = rng.random()
        if roll < 0.12:
            name = rng.choice(PUSH_FAULTS)
            value = round(rng.uniform(0.05, 0.4), 2) if name == "delay" else rng.random() < 0.7
            steps.append(("push_fault", platform, name, value))
        elif roll < 0.22:
            endpoint = rng.choice(FAULTY_ENDPOINTS)
            kind = rng.choice(("errcode",) * 3 + transport_faults)
            value = rng.choice(TRANSPORT_FAULTS.get(kind, (-1,)))
            latency = rng.choice((0, 0, 0.2, 0.5))
            fault = (kind, value)
            steps.append(("api_fault", platform, endpoint, fault, rng.randint(1, 3), latency))
        elif roll < 0.28:
            steps.append(("pause",) if rng.random() < 0.6 else ("resume",))
        elif roll < 0.34:
            steps.append(("flush",) if rng.random() < 0.6 else ("jobs",))
        elif not authorized[platform, appid]:
            steps.append(("authorize", platform, appid, sets, rng.choice(MODES)))
            authorized[platform, appid] = True
        else:
            pick = rng.random()
            if pick < 0.3:
                steps.append(("revoke", platform, appid))
                authorized[platform, appid] = False
            elif pick < 0.55:
                steps.append(("update_link", platform, appid, sets, rng.choice(MODES)))
            elif pick < 0.8:
                steps.append(("update_assistant", platform, appid, sets))
            else:
                steps.append(("authorize", platform, appid, sets, rng.choice(MODES)))
    return steps


def transport_faults(sandbox) -> tuple[str, ...]:
    """The transport faults this sandbox knows (it echoes the ones it understood)."""
    probe = {kind: values[0] for kind, values in TRANSPORT_FAULTS.items()}
    known = []
    for kind, value in probe.items():
        answer = sandbox.http.post(
            f"{sandbox.url}/sandbox/api/faults",
            json={"endpoints": {"api_get_authorizer_list": {kind: value, "times": 1}}},
            timeout=30,
        )
        spec = answer.json().get("endpoints", {}).get("api_get_authorizer_list", {})
        if answer.status_code == 200 and spec.get(kind):
            known.append(kind)
    sandbox.set_faults(clear=True)
    return tuple(known)


def describe(steps: list) -> str:
    return "\n".join(f"  {i + 1:2d}. {step!r}" for i, step in enumerate(steps))


# --- a relay between the sandbox's pusher and the portal ------------------------------------------


class PushRelay:
    """Forwards the sandbox's pushes to the portal byte for byte; `pause` holds them (the
    sandbox sees a slow network and may time out and retry), `resume` lets them through."""

    def __init__(self, target: str):
        self.target = target
        self.gate = threading.Event()
        self.gate.set()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                relay.gate.wait(60)
                try:
                    answer = requests.post(
                        relay.target + self.path,
                        data=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "text/xml")},
                        timeout=30,
                    )
                    status, text = answer.status_code, answer.content
                except requests.RequestException:
                    status, text = 502, b"relay: portal unreachable"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:  # the sandbox gave up waiting: it retries on its own
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def paused(self) -> bool:
        return not self.gate.is_set()

    def pause(self) -> None:
        self.gate.clear()

    def resume(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.resume()
        self.server.shutdown()
        self.server.server_close()


# --- running a schedule ------------------------------------------------------------------------


@dataclass
class AuthCode:
    """One authorization WeChat issued during the schedule, and what Grantdesk was told."""

    value: str
    platform: str
    appid: str
    signalled: bool  # a push was sent or the browser came back with it
    killed: bool = False  # revoked before anyone exchanged it


@dataclass
class Run:
    seed: int | None
    steps: list
    divergences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    evidence: list[str] = field(default_factory=list)  # what the portal holds, when diverged


class Runner:
    """Plays schedules against the live portal and sandbox (fixtures of the test)."""

    def __init__(self, portal, sandbox, relay: PushRelay):
        self.portal, self.sandbox, self.relay = portal, sandbox, relay
        self.http = requests.Session()

    # world -------------------------------------------------------------------------------------

    def fresh_accounts(self) -> list[dict]:
        return [
            {"appid": a["appid"], "admin": a["admin"], "offered": a["offered_permission_set_ids"]}
            for a in self.sandbox.state()["accounts"]
            if a["scenario"] == "fresh"
        ]

    def reset(self) -> None:
        """A new world: sandbox reseeded with platforms A and B, portal tables emptied, B
        added, a merchant, a ticket for each platform."""
        self.relay.resume()
        self.sandbox.reset()
        self.sandbox.configure(
            event_url=self.relay.url + "/wechat/events",
            message_url=self.portal.url + "/wechat/messages/$APPID$",
            initiating_domain=self.portal.host,
        )
        b = PLATFORM_B["appid"]
        self.sandbox.add_platform(
            **PLATFORM_B,
            event_url=self.relay.url + "/wechat/events",
            message_url=self.portal.url + f"/wechat/{b}/messages/$APPID$",
            initiating_domain=self.portal.host,
            permission_set_ids=self.sandbox.state()["platform"]["permission_set_ids"],
        )
        self.platform_appids = (self.sandbox.component_appid, b)
        clock.reset()

        def wipe():
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
            platforms.add(
                component_appid=b, appsecret=PLATFORM_B["secret"], token=PLATFORM_B["token"],
                encoding_aes_key=PLATFORM_B["encoding_aes_key"], name="Platform B",
            )  # fmt: skip
            merchant = Merchant(name="商户 Convergence")
            db.session.add(merchant)
            db.session.commit()
            return merchant.id

        self.merchant_id = self.portal.call(wipe)
        limiter.reset()
        for platform in self.platform_appids:
            self.sandbox.push_ticket(platform)
        self.sandbox.flush()
        self.accounts = {a["appid"]: a for a in self.fresh_accounts()}
        self.codes: dict[str, AuthCode] = {}
        # (platform, endpoint) -> faults armed and not yet accounted / every fault armed (an
        # upper bound) / faults the portal ran into
        self.injected: dict[tuple[str, str], int] = {}
        self.armed: dict[tuple[str, str], int] = {}
        self.consumed: dict[tuple[str, str], int] = {}
        self.notes: list[str] = []
        self.seen: list[str] = []  # divergences noticed on the way (not in the end state)

    def play(self, steps: list, seed: int | None = None) -> Run:
        started = time.monotonic()
        self.reset()
        run = Run(seed, list(steps), notes=self.notes)
        for step in steps:
            if step[0] in USER_STEPS:
                self.advance(PACE_SECONDS)
            getattr(self, "step_" + step[0])(*step[1:])
        self.quiesce()
        run.divergences = self.check()
        if run.divergences:
            run.evidence = self.portal.call(_evidence)
        run.seconds = time.monotonic() - started
        return run

    # steps -------------------------------------------------------------------------------------

    def step_authorize(self, platform: str, appid: str, sets, mode: str) -> None:
        def start():
            merchant = db.session.get(Merchant, self.merchant_id)
            session = sessions.start_session(merchant, list(sets), component_appid=platform)
            db.session.commit()
            return session.link_token

        self._consent(platform, appid, sets, mode, self.portal.call(start))

    def step_update_link(self, platform: str, appid: str, sets, mode: str) -> None:
        def start():
            authorizer = _held(platform, appid)
            try:
                if authorizer is None or authorizer.merchant_id is None or authorizer.grant is None:
                    return None
                return sessions.start_update_session(authorizer, list(sets)).link_token
            except ObjectDeletedError:  # a push purged the account while the merchant clicked
                db.session.rollback()
                return None

        token = self.portal.call(start)
        if token is None:
            self.notes.append(f"update_link {appid}: Grantdesk holds no grant, skipped")
            return
        self._consent(platform, appid, sets, mode, token)

    def _open_link(self, link_token: str):
        page = self.http.get(f"{self.portal.url}/connect/{link_token}", timeout=30)
        match = LINK.search(page.text) if page.status_code == 200 else None
        if match is None:
            self.notes.append(f"link page answered {page.status_code}; the merchant gave up")
            return None
        return parse_authorization_url(html.unescape(match.group(1)))

    def _consent(self, platform: str, appid: str, sets, mode: str, link_token: str) -> None:
        link = self._open_link(link_token)
        if link is None:
            return
        if mode == "reload":
            again = self._open_link(link_token)
            if again is not None and again.pre_auth_code == link.pre_auth_code:
                self.seen.append("a reload of the link page showed the same pre_auth_code")
        account = self.accounts[appid]
        answer = self.sandbox.http.post(
            f"{self.sandbox.url}/sandbox/api/consent",
            json={
                "pre_auth_code": link.pre_auth_code,
                "wechat_user": account["admin"],
                "authorizer_appid": appid,
                "permission_set_ids": list(sets),
                "redirect_uri": link.redirect_uri,
                "component_appid": link.component_appid,
            },
            timeout=60,
        )
        if answer.status_code != 200:
            self.notes.append(f"consent refused: {answer.json().get('error')}")
            return
        result = answer.json()
        follow = mode != "phone"
        self.codes[result["auth_code"]] = AuthCode(
            result["auth_code"], platform, appid, signalled=bool(result["info_type"]) or follow
        )
        if mode == "late" and not self.relay.paused:
            self.sandbox.flush()
        if mode in ("pc", "late", "reload") or (mode == "race" and self.relay.paused):
            self._follow(result["redirect_url"])
        elif mode == "race":
            self._race(result["redirect_url"])

    def _follow(self, redirect_url: str) -> None:
        response = self.http.get(redirect_url, timeout=60)
        assert response.status_code < 500, (response.status_code, response.text[:500])

    def _race(self, redirect_url: str) -> None:
        """The browser comes back while the push is being delivered."""
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(fn, *args):
            try:
                barrier.wait(10)
                fn(*args)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(self._follow, redirect_url)),
            threading.Thread(target=run, args=(self.sandbox.flush,)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        if errors:
            raise errors[0]

    def step_update_assistant(self, platform: str, appid: str, sets) -> None:
        answer = self.sandbox.http.post(
            f"{self.sandbox.url}/sandbox/api/update",
            json={"authorizer_appid": appid, "permission_set_ids": list(sets),
                  "component_appid": platform},
            timeout=60,
        )  # fmt: skip
        if answer.status_code != 200:
            self.notes.append(f"update {appid} refused: {answer.json().get('error')}")
            return
        result = answer.json()
        if result.get("auth_code"):
            self.codes[result["auth_code"]] = AuthCode(result["auth_code"], platform, appid, True)

    def step_revoke(self, platform: str, appid: str) -> None:
        unused = self._unused_codes(platform, appid)
        answer = self.sandbox.http.post(
            f"{self.sandbox.url}/sandbox/api/revoke",
            json={"authorizer_appid": appid, "component_appid": platform},
            timeout=60,
        )
        if answer.status_code != 200:
            self.notes.append(f"revoke {appid} refused: {answer.json().get('error')}")
            return
        for value in unused:  # WeChat kills the account's unused codes on revocation
            if value in self.codes:
                self.codes[value].killed = True

    def step_push_fault(self, platform: str, name: str, value) -> None:
        self.sandbox.set_faults(component_appid=platform, pushes={name: value})

    def step_api_fault(
        self, platform: str, endpoint: str, fault: tuple, times: int, latency: float
    ) -> None:
        """errcode -1 (system busy) or a transport fault (HTTP 5xx, reset, non-JSON, timeout)
        on one platform's API (the other platform's calls are untouched)."""
        self._account_faults(platform, endpoint)
        kind, value = fault
        self.sandbox.set_faults(
            component_appid=platform,
            endpoints={endpoint: {kind: value, "times": times, "latency": latency}},
        )
        self.injected[platform, endpoint] = times
        self.armed[platform, endpoint] = self.armed.get((platform, endpoint), 0) + times

    def step_pause(self) -> None:
        self.relay.pause()

    def step_resume(self) -> None:
        self.relay.resume()

    def step_flush(self) -> None:
        if not self.relay.paused:  # a paused relay would hold the flush until it times out
            self.sandbox.flush()

    def step_jobs(self) -> None:
        self.advance(WORKER_TICK_SECONDS)
        for name in ("inbox_retry", "authorizer_token_sweep"):
            self.portal.call(jobs.run_job, name, force=True)

    # quiescence ------------------------------------------------------------------------------

    def _account_faults(self, platform: str, endpoint: str) -> None:
        """Count the armed faults of `endpoint` that calls ran into (before re-arming it)."""
        armed = self.injected.pop((platform, endpoint), 0)
        if not armed:
            return
        faults = self.sandbox.state(component_appid=platform)["faults"]
        left = (faults["endpoints"].get(endpoint) or {}).get("times")
        key = (platform, endpoint)
        self.consumed[key] = self.consumed.get(key, 0) + armed - (left or 0)

    def advance(self, seconds: float) -> None:
        """Time passes for both sides alike (their clocks stay in step)."""
        clock.advance(seconds)
        self.sandbox.clock(advance_seconds=seconds)

    def run_jobs(self) -> None:
        for name in ("inbox_retry", "authorizer_token_sweep"):
            self.portal.call(jobs.run_job, name, force=True)
        self.sandbox.flush(timeout=60)

    def quiesce(self) -> None:
        """WeChat's weather clears; pushes drain; time passes and the jobs run until idle;
        two hours later every access token is refreshed with the refresh token we hold."""
        self.relay.resume()
        self.sandbox.flush(timeout=60)
        for platform, endpoint in list(self.injected):
            self._account_faults(platform, endpoint)
        for platform in self.platform_appids:
            self.sandbox.set_faults(component_appid=platform, clear=True)
        self.sandbox.flush(timeout=60)
        self.portal.call(jobs.run_job, "inbox_retry", force=True)
        for round_ in range(1, QUIESCENCE_ROUNDS + 1):
            self.advance(ROUND_SECONDS)
            self.run_jobs()
            if round_ >= 2 and not self.portal.call(_unsettled_events):
                break
        self.advance(LATER_SECONDS)
        self.run_jobs()

    # the invariant ------------------------------------------------------------------------------

    def _unused_codes(self, platform: str, appid: str) -> list[str]:
        from app.sandbox.models import Account, Credential
        from app.sandbox.models import Platform as SandboxPlatform
        from app.sandbox.models import db as sandbox_db

        with self.sandbox.app.app_context():
            rows = sandbox_db.session.execute(
                select(Credential.value)
                .join(Account, Credential.account_id == Account.id)
                .join(SandboxPlatform, Credential.platform_id == SandboxPlatform.id)
                .where(
                    SandboxPlatform.appid == platform,
                    Account.appid == appid,
                    Credential.kind == "auth_code",
                    Credential.used_at.is_(None),
                )
            )
            return list(rows.scalars())

    def _used_codes(self) -> set[str]:
        from app.sandbox.models import Credential
        from app.sandbox.models import db as sandbox_db

        with self.sandbox.app.app_context():
            rows = sandbox_db.session.execute(
                select(Credential.value).where(
                    Credential.kind == "auth_code", Credential.used_at.is_not(None)
                )
            )
            return set(rows.scalars())

    def check(self) -> list[str]:
        """What Grantdesk holds against what WeChat holds, per (platform, account); one line
        per divergence."""
        states = {p: self.sandbox.state(component_appid=p) for p in self.platform_appids}
        wechat = {
            (p, g["authorizer_appid"]): g for p, state in states.items()
            for g in state["authorizations"]
        }  # fmt: skip
        targets = sorted({(c.platform, c.appid) for c in self.codes.values()})
        ours = self.portal.call(_portal_view, targets, self.merchant_id)
        active = {key[1] for key, truth in wechat.items() if truth["status"] == "active"}
        problems: list[str] = list(self.seen)
        for platform, appid in targets:
            truth, held = wechat.get((platform, appid)), ours[platform, appid]
            label = appid if platform == self.platform_appids[0] else f"{appid}@B"
            if truth and truth["status"] == "active":
                problems += _check_active(label, truth, held)
            elif truth:
                # Its appid may stay stored while the account is authorized to the other one.
                problems += _check_revoked(label, held, gone_everywhere=appid not in active)
        for reused in self.portal.call(_reused_ids):
            problems.append(reused)
        for event in self.portal.call(_unsettled_events):
            problems.append(f"inbox event {event} is not processed, ignored or a duplicate")
        for state in states.values():
            for delivery in state["deliveries"]:  # copies too: a duplicate gets `success`
                attempts = delivery["attempts"]
                replies = [a["reply"] or a["error"] or a["http_status"] for a in attempts]
                answered = any(a["http_status"] for a in attempts)
                # (A push the relay held past the sandbox's patience is the relay's.)
                if delivery["status"] != "delivered" and answered:
                    problems.append(
                        f"push {delivery['info_type']} (copy: {bool(delivery['duplicate_of'])})"
                        f" was never acknowledged: {replies}"
                    )
        problems += self._check_exchanges(states)
        return problems

    def _check_exchanges(self, states: dict) -> list[str]:
        used = self._used_codes()
        problems = []
        exchanged = 0
        codes = list(self.codes.values())  # in the order WeChat issued them
        for number, code in enumerate(codes):
            if code.killed:
                continue
            # A code need not be exchanged once a later one of the account was: that one
            # carries the newer grant (an older push is rightly skipped as stale).
            superseded = any(
                (later.platform, later.appid) == (code.platform, code.appid) and later.value in used
                for later in codes[number + 1 :]
            )
            if code.value in used:
                exchanged += 1
            elif code.signalled and not superseded:
                problems.append(f"{code.appid}: an authorization code was never exchanged")
        killed = sum(1 for c in self.codes.values() if c.killed and c.signalled)
        calls = sum(state["api_calls"].get("api_query_auth", 0) for state in states.values())
        # Faults seen used when re-armed or cleared, and all armed: a call already inside a
        # fault's latency when it is re-armed still fails without showing in the count.
        faults = sum(n for (_, e), n in self.consumed.items() if e == "api_query_auth")
        armed = sum(n for (_, e), n in self.armed.items() if e == "api_query_auth")
        low, high = exchanged + faults, exchanged + armed + killed
        if not low <= calls <= high:
            problems.append(
                f"api_query_auth called {calls} times for {exchanged} exchanged authorizations "
                f"({faults}..{armed} injected failures, {killed} codes revoked before exchange)"
            )
        return problems


def _check_active(appid: str, truth: dict, held: dict) -> list[str]:
    if not held["authorizer"]:
        return [f"{appid}: WeChat says authorized {truth['permission_set_ids']}; Grantdesk holds "
                f"no authorizer"]  # fmt: skip
    problems = []
    if held["status"] != GrantStatus.ACTIVE.value:
        problems.append(f"{appid}: WeChat says active; Grantdesk's grant is {held['status']}")
    if sorted(held["set_ids"] or []) != sorted(truth["permission_set_ids"]):
        problems.append(
            f"{appid}: sets differ: WeChat {sorted(truth['permission_set_ids'])}, "
            f"Grantdesk {sorted(held['set_ids'] or [])}"
        )
    if held["tokens"] != 1:
        problems.append(f"{appid}: {held['tokens']} stored refresh tokens (want 1)")
    elif held["refresh_token"] != truth["refresh_token"]:
        problems.append(f"{appid}: stored refresh token is not the one WeChat accepts")
    if not held["owned"]:
        problems.append(f"{appid}: the account is not held for the merchant who authorized it")
    return problems


def _check_revoked(appid: str, held: dict, *, gone_everywhere: bool = True) -> list[str]:
    problems = []
    if held["authorizer"] or held["tokens"]:
        problems.append(
            f"{appid}: WeChat says revoked; Grantdesk still holds the authorizer "
            f"(grant {held['status']}, {held['tokens']} refresh tokens)"
        )
    if held["in_clear"] and gone_everywhere:
        problems.append(f"{appid}: revoked, but its appid is still stored in {held['in_clear']}")
    if not held["tombstone"]:
        problems.append(f"{appid}: revoked, but no purge tombstone in the audit log")
    return problems


def _held(platform: str, appid: str) -> Authorizer | None:
    return db.session.scalar(
        select(Authorizer).where(Authorizer.component_appid == platform, Authorizer.appid == appid)
    )


def _portal_view(targets: list[tuple[str, str]], merchant_id: int) -> dict:
    """What the portal's database holds about each (platform, appid) (inside portal.call)."""
    view = {}
    for platform, appid in targets:
        authorizer = _held(platform, appid)
        grant = authorizer.grant if authorizer else None
        tokens = (
            db.session.scalar(
                select(func.count())
                .select_from(AuthorizerToken)
                .where(AuthorizerToken.authorizer_id == authorizer.id)
            )
            if authorizer
            else 0
        )
        with using(platform):
            ref = account_ref(appid)
        tombstone = any(
            (details or {}).get("appid_hash") == ref
            for details in db.session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "authorizer.purged")
            )
        )
        view[platform, appid] = {
            "authorizer": authorizer is not None,
            "owned": authorizer is not None and authorizer.merchant_id == merchant_id,
            "status": grant.status.value if grant else None,
            "set_ids": list(grant.set_ids) if grant else None,
            "tokens": tokens,
            "refresh_token": authorizer.token.refresh_token if authorizer and authorizer.token
            else None,
            "tombstone": bool(tombstone),
            "in_clear": tables_mentioning(appid),
        }  # fmt: skip
    return view


def tables_mentioning(value: str) -> list[str]:
    """Tables with a row that still holds `value` (read back through the column types, so
    encrypted columns count as what they decrypt to)."""
    found = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()):
            if any(value in str(cell) for cell in row if cell is not None):
                found.append(table.name)
                break
    return found


def _reused_ids() -> list[str]:
    """Live accounts wearing the id of a purged one (its history would show on their pages)."""
    purged = {
        (details or {}).get("authorizer_id")
        for details in db.session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "authorizer.purged")
        )
    }
    live = db.session.scalars(select(Authorizer.id)).all()
    return [f"authorizer id {i} is the id of a purged account" for i in live if i in purged]


def _evidence() -> list[str]:
    """The inbox and the sessions, for a divergence report (no secrets: outcomes only)."""
    lines = [
        f"inbox #{e.id} {e.info_type} create_time={e.create_time} {e.outcome} "
        f"attempts={e.attempts} {e.error or ''}".strip()[:300]
        for e in db.session.scalars(select(InboxEvent).order_by(InboxEvent.id))
        if e.info_type != "component_verify_ticket"
    ]
    lines += [
        f"session #{s.id} biz={bool(s.biz_appid)} {s.status.value} via={s.completed_via} "
        f"reason={s.failure_reason} exchanging={bool(s.exchanging_at)}"
        for s in db.session.scalars(select(AuthorizationSession).order_by(AuthorizationSession.id))
    ]
    return lines


def _unsettled_events() -> list[str]:
    rows = db.session.execute(
        select(InboxEvent.id, InboxEvent.info_type, InboxEvent.outcome, InboxEvent.error).where(
            InboxEvent.outcome.not_in(SETTLED)
        )
    ).all()
    return [f"#{r.id} {r.info_type} {r.outcome} ({r.error or 'no error'})" for r in rows]


# --- shrinking -----------------------------------------------------------------------------------


def kinds(divergences: list[str]) -> set[str]:
    """A divergence's shape without the appids and numbers (so a shrink keeps the same bug)."""
    return {re.sub(r"wx[0-9a-f]{16}|#\d+|\d+", "_", d) for d in divergences}


def shrink(runner: Runner, steps: list, failing: set[str], *, budget_seconds: float) -> list:
    """Delta debugging by removing steps: the shortest schedule found (within the budget)
    that still shows one of the same divergences."""
    deadline = time.monotonic() + budget_seconds
    granularity = 2
    while len(steps) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(steps) // granularity)
        for start in range(0, len(steps), chunk):
            candidate = steps[:start] + steps[start + chunk :]
            if not candidate or time.monotonic() >= deadline:
                continue
            if kinds(runner.play(candidate).divergences) & failing:
                steps, granularity = candidate, max(granularity - 1, 2)
                break
        else:
            if chunk == 1:
                break
            granularity = min(len(steps), granularity * 2)
    return steps
