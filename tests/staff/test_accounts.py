"""The authorizations table against seeded volume: filters, search, sort, pages, htmx, CSV."""

import csv
import io

from sqlalchemy import func, select

from app.extensions import db
from app.models import Authorizer, Grant, GrantSet, GrantStatus
from app.services.console import queries as queries
from tests.staff.conftest import make_account, make_attention

HTMX = {"HX-Request": "true", "HX-Target": "results", "HX-Current-URL": "http://localhost/"}


def count(*conditions, join_grant=False):
    query = select(func.count()).select_from(Authorizer)
    if join_grant:
        query = query.join(Grant, Grant.authorizer_id == Authorizer.id)
    return db.session.scalar(query.where(*conditions))


def test_seeded_grant_sets_mirror_the_json_lists(seeded):
    grants = db.session.scalars(select(Grant)).all()
    pairs = {(g.authorizer_id, s) for g in grants for s in g.set_ids}
    assert pairs == set(db.session.execute(select(GrantSet.authorizer_id, GrantSet.set_id)).all())


def test_filters_match_direct_counts(seeded):
    total = count()
    assert queries.count_accounts(queries.AccountFilter()) == total == 600
    active = count(Grant.status == GrantStatus.ACTIVE, join_grant=True)
    assert queries.count_accounts(queries.AccountFilter(status="active")) == active
    mini = count(Authorizer.account_type == "mini_program")
    assert queries.count_accounts(queries.AccountFilter(account_type="mini_program")) == mini
    with_one = db.session.scalar(select(func.count()).where(GrantSet.set_id == 1))
    granted = queries.AccountFilter(set_id=1)
    missing = granted.with_(set_mode="missing")
    assert queries.count_accounts(granted) == with_one
    assert queries.count_accounts(granted) + queries.count_accounts(missing) == total
    merchant_id = db.session.scalar(select(Authorizer.merchant_id).where(
        Authorizer.merchant_id.is_not(None)).limit(1))  # fmt: skip
    mine = count(Authorizer.merchant_id == merchant_id)
    assert queries.count_accounts(queries.AccountFilter(merchant_id=merchant_id)) == mine > 0


def test_needs_attention_filter_covers_each_reason(app):
    ok = make_account(set_ids=[1])
    flagged = [
        make_account(status=GrantStatus.NEEDS_REAUTHORIZATION),
        make_account(),  # no merchant: unassigned
    ]
    failing = make_account(merchant=None)
    failing.token.consecutive_failures = 2
    item_account = make_account()
    make_attention(item_account)
    db.session.commit()
    page = queries.list_accounts(queries.AccountFilter(attention=True))
    appids = {row["appid"] for row in page.rows}
    assert ok.appid in appids  # no merchant either: make_account defaults to unassigned
    assert {a.appid for a in flagged} | {failing.appid, item_account.appid} <= appids
    assert all(row["needs_attention"] for row in page.rows)


def test_search_by_name_and_appid(staff_client, app):
    target = make_account(nick_name="西湖龙井官方号")
    make_account(nick_name="Something else")
    by_name = staff_client.get("/staff/accounts/?q=龙井").get_data(as_text=True)
    assert "西湖龙井官方号" in by_name and "Something else" not in by_name
    by_appid = staff_client.get(f"/staff/accounts/?q={target.appid}").get_data(as_text=True)
    assert target.appid in by_appid and "1–1" in by_appid


def test_search_escapes_like_wildcards(app):
    make_account(nick_name="100% Juice")
    make_account(nick_name="1000 Juice")
    assert queries.count_accounts(queries.AccountFilter(q="100%")) == 1


def test_pagination_walks_every_row_once(seeded):
    seen = []
    f = queries.AccountFilter(per_page=100, sort="name")
    for number in range(1, 7):
        page = queries.list_accounts(f.with_(page=number))
        seen += [row["id"] for row in page.rows]
    assert len(seen) == len(set(seen)) == 600
    beyond = queries.list_accounts(f.with_(page=99))
    assert beyond.pages == 6 and beyond.page == 6  # past the end clamps to the last page


def test_sorting(seeded):
    rows = queries.list_accounts(queries.AccountFilter(sort="appid", per_page=100)).rows
    assert [r["appid"] for r in rows] == sorted(r["appid"] for r in rows)
    rows = queries.list_accounts(queries.AccountFilter(sort="-authorized", per_page=100)).rows
    stamps = [r["authorized_at"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)


def test_full_page_without_htmx_and_fragment_with_it(staff_client, seeded):
    url = "/staff/accounts/?status=active&set_id=2&sort=name&page=2"
    page = staff_client.get(url)
    html = page.get_data(as_text=True)
    assert "<html" in html and 'id="results"' in html and "<form" in html
    assert 'aria-sort="ascending"' in html
    fragment = staff_client.get(url, headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="results"') and "<html" not in fragment
    assert "Vary" in page.headers and "HX-Request" in page.headers["Vary"]


def test_filter_values_survive_a_reload(staff_client, seeded):
    html = staff_client.get("/staff/accounts/?account_type=mini_program&attention=y&q=Cloud")
    text = html.get_data(as_text=True)
    assert '<option selected value="mini_program">' in text
    assert "checked" in text and 'value="Cloud"' in text
    # pager and sort links keep the filters
    assert "account_type=mini_program" in text.split('id="results"')[1]


def test_bad_parameters_fall_back_to_defaults(staff_client, seeded):
    response = staff_client.get(
        "/staff/accounts/?page=zz&per_page=9999&set_id=x&sort=evil&merchant=-1"
    )
    assert response.status_code == 200


def test_csv_export_streams_the_filtered_set(staff_client, seeded):
    # buffered: the test client's isolated contexts must also run the streamed body
    response = staff_client.get("/staff/accounts/export.csv?account_type=official_account",
                                buffered=True)  # fmt: skip
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(queries.CSV_HEADER)
    expected = count(Authorizer.account_type == "official_account")
    assert len(rows) - 1 == expected
    assert {r[2] for r in rows[1:]} == {"official_account"}


def test_csv_neutralises_formulas(staff_client, app):
    make_account(nick_name='=HYPERLINK("http://evil")')
    response = staff_client.get("/staff/accounts/export.csv", buffered=True)
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[1][1].startswith("'=")


def test_export_generator_yields_in_chunks(seeded):
    chunks = list(queries.export_rows(queries.AccountFilter(), batch=100))
    assert len(chunks) >= 6 and sum(c.count("\n") for c in chunks) == 601
