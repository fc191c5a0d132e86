"""Convergence: whatever the order, duplication or failure of WeChat's signals, Grantdesk ends up
holding exactly what WeChat holds.

Two platforms serve the world (issue #16), and each step acts on one of them. Each schedule is
a seeded random sequence of authorizations (PC redirect, phone without a
redirect, or the redirect racing the push), set updates (through our link or WeChat's security
assistant), revocations and re-authorizations, mixed with push faults (duplicate, delay,
out-of-order, a paused network) and transient API failures. After it: quiescence (faults
cleared, pushes flushed, time moved on and the portal's jobs run until idle), then the
invariant, account by account, against the sandbox's own state.

CI runs a few dozen schedules; ``--convergence-schedules 500`` (or CONVERGENCE_SCHEDULES=500)
runs more, ``--convergence-seed`` picks another start. A failure prints the seed and the
shortest failing schedule found by removing steps.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import delete, select, update

from app.extensions import db
from app.models import AuthorizationSession, Authorizer, AuthorizerToken, Grant
from tests.convergence.world import (
    PushRelay,
    Runner,
    describe,
    generate,
    kinds,
    shrink,
    transport_faults,
)

SHRINK_BUDGET_SECONDS = 120
PROGRESS_EVERY = 25


@pytest.fixture
def relay(live_portal):
    instance = PushRelay(live_portal.url)
    yield instance
    instance.close()


@pytest.mark.slow
def test_grantdesk_converges_to_wechat(live_portal, sandbox, relay, convergence_plan, capsys):
    first_seed, seeds = convergence_plan
    runner = Runner(live_portal, sandbox, relay)
    runner.reset()
    accounts = runner.fresh_accounts()
    faults = transport_faults(sandbox)
    started = time.monotonic()
    failures = []
    for number, seed in enumerate(seeds, 1):
        run = runner.play(generate(seed, accounts, faults, runner.platform_appids), seed)
        if run.divergences:
            failures.append(run)
            with capsys.disabled():
                print(f"\nseed {seed} diverged: " + "; ".join(run.divergences)[:300], flush=True)
        if number % PROGRESS_EVERY == 0:
            with capsys.disabled():
                print(
                    f"\nconvergence: {number}/{len(seeds)} schedules, {len(failures)} diverged, "
                    f"{time.monotonic() - started:.0f}s",
                    flush=True,
                )
    elapsed = time.monotonic() - started
    summary = (
        f"convergence: {len(seeds)} schedules, seeds {first_seed}..{first_seed + len(seeds) - 1}, "
        f"{len(failures)} diverged, {elapsed:.1f}s"
    )
    with capsys.disabled():
        print(f"\n{summary}; transport faults: {', '.join(faults) or 'none in this sandbox'}")
    if not failures:
        return
    report = [summary]
    first = failures[0]
    shortest = shrink(
        runner, first.steps, kinds(first.divergences), budget_seconds=SHRINK_BUDGET_SECONDS
    )
    replay = runner.play(shortest)
    report += [
        f"first failing seed {first.seed} ({len(first.steps)} steps):",
        describe(first.steps),
        "diverged:",
        *(f"  - {d}" for d in first.divergences),
        "what Grantdesk held:",
        *(f"    {line}" for line in first.evidence),
        f"shortest failing schedule ({len(shortest)} steps):",
        describe(shortest),
        "which diverges as:",
        *(f"  - {d}" for d in replay.divergences or ["(did not diverge on replay: a race)"]),
        *(f"    {line}" for line in replay.evidence),
        *(f"    note: {line}" for line in replay.notes),
        "every failing seed:",
        *(f"  {f.seed}: " + "; ".join(f.divergences)[:400] for f in failures),
    ]
    pytest.fail("\n".join(report), pytrace=False)


def test_the_invariant_notices_what_diverges(live_portal, sandbox, relay):
    """The oracle itself: a converged world passes; a tampered one is reported."""
    runner = Runner(live_portal, sandbox, relay)
    runner.reset()
    a, b = runner.platform_appids
    first, second = runner.fresh_accounts()[:2]
    run = runner.play(
        [
            ("authorize", a, first["appid"], (first["offered"][0],), "pc"),
            ("authorize", b, first["appid"], (first["offered"][0],), "race"),
            ("authorize", a, second["appid"], (second["offered"][0],), "phone"),
            ("revoke", a, second["appid"]),
        ]
    )
    assert run.divergences == []

    def tamper():
        authorizer = db.session.scalar(
            select(Authorizer).where(
                Authorizer.component_appid == a, Authorizer.appid == first["appid"]
            )
        )
        db.session.execute(update(Grant).values(set_ids=[99]))
        db.session.execute(
            delete(AuthorizerToken).where(AuthorizerToken.authorizer_id == authorizer.id)
        )
        db.session.execute(update(AuthorizationSession).values(biz_appid=second["appid"]))
        db.session.commit()

    live_portal.call(tamper)
    found = "\n".join(runner.check())
    assert f"{first['appid']}: sets differ" in found
    assert f"{first['appid']}@B: sets differ" in found  # the tamper hit both grants
    assert f"{first['appid']}: 0 stored refresh tokens" in found
    assert f"{first['appid']}@B: 0 stored refresh tokens" not in found
    assert (
        f"{second['appid']}: revoked, but its appid is still stored in ['authorization_sessions']"
        in found
    )
