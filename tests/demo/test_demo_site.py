"""The demo site: driven by real Chromium the way a person (or the runner) would use it, plus
its HTTP contract (redirects, validation, the /demo side door and the fault knobs)."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.async_api import Page

from local.demo import DEMO_EMAIL, DEMO_PASSWORD, DemoServer, create_demo_app, serve_demo
from tests.demo.helpers import sign_in

needs_browser = pytest.mark.browser


async def state(client: httpx.AsyncClient) -> dict:
    response = await client.get("/demo/state")
    assert response.status_code == 200
    return response.json()


# --- in the browser -------------------------------------------------------------------------


@needs_browser
async def test_two_step_login_refuses_wrong_input_then_signs_in(
    page: Page, demo: DemoServer
) -> None:
    await page.goto(f"{demo.base_url}/mail/inbox")
    assert page.url.endswith("/mail/login")  # not signed in yet

    await page.get_by_label("Email address").fill("someone@else.test")
    await page.get_by_role("button", name="Next").click()
    assert "Couldn't find your Demo Mail account" in await page.get_by_role("alert").inner_text()

    await page.get_by_label("Email address").fill(DEMO_EMAIL)
    await page.get_by_role("button", name="Next").click()
    await page.wait_for_url("**/mail/login/password")
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Sign in").click()
    assert "Wrong password" in await page.get_by_role("alert").inner_text()

    await page.get_by_label("Password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/mail/inbox")
    inbox = page.get_by_role("table", name="Inbox")
    assert await inbox.locator("[data-thread-id]").count() == 5
    ids = await page.locator("[data-thread-id]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-thread-id'))"
    )
    assert ids == ["t1", "t2", "t3", "t4", "t5"]
    # The category is not in the list: it has to be read from each email.
    assert "data-category" not in await page.content()


@needs_browser
async def test_open_email_and_mark_processed(
    page: Page, demo: DemoServer, client: httpx.AsyncClient
) -> None:
    await sign_in(page, demo.base_url)
    await page.get_by_role("link", name="Following up on your seed round").click()
    await page.wait_for_url("**/mail/thread/t1")

    fields = {
        name: await page.locator(f"[data-field='{name}']").inner_text()
        for name in (
            "category", "name", "company", "email", "phone", "investment_focus",
            "message_summary",
        )
    }  # fmt: skip
    assert fields == {
        "category": "Investor",
        "name": "Sarah Chen",
        "company": "Horizon Ventures",
        "email": "sarah.chen@horizonvc.example",
        "phone": "+1 415 555 0134",
        "investment_focus": "Seed-stage B2B SaaS",
        "message_summary": "Wants a call next week to discuss leading the seed round.",
    }
    assert await page.get_by_text("Category: Investor").is_visible()
    article = page.locator("article[data-thread-id='t1']")
    assert await article.get_attribute("data-processed") == "false"

    await page.get_by_role("button", name="Mark as processed").click()
    await page.wait_for_selector("article[data-processed='true']")
    assert await page.get_by_role("status").inner_text() == "Processed"
    # Pressing it again (a retried step) keeps one write.
    await page.get_by_role("button", name="Mark as processed").click()
    await page.wait_for_selector("article[data-processed='true']")

    body = await state(client)
    assert [e["id"] for e in body["emails"] if e["processed"]] == ["t1"]
    assert body["writes"] == [{"action": "mark_processed", "target": "t1"}]

    await page.get_by_role("link", name="Back to inbox").click()
    row = page.locator("[data-thread-id='t1']")
    assert await row.get_attribute("data-processed") == "true"
    assert await row.locator("[data-field='status']").inner_text() == "Processed"


@needs_browser
async def test_add_record(page: Page, demo: DemoServer, client: httpx.AsyncClient) -> None:
    await page.goto(f"{demo.base_url}/crm/")
    assert await page.locator("[data-testid='crm-row']").count() == 3
    await page.get_by_role("button", name="Add record").click()
    await page.wait_for_url("**/crm/new*")  # a GET form: /crm/new?
    values = {
        "Name": "Marcus Adeyemi",
        "Company": "Northwind Capital",
        "Email": "marcus@northwind.example",
        "Phone": "+44 20 7946 0321",
        "Investment focus": "Climate tech, Series A",
        "Notes": "Asked for the data room.",
    }
    for label, value in values.items():
        await page.get_by_label(label, exact=True).fill(value)
    await page.get_by_role("button", name="Save record").click()
    await page.wait_for_url("**/crm/?created=rec-4")
    assert "Added record for Marcus Adeyemi" in await page.get_by_role("status").inner_text()
    row = page.locator("[data-testid='crm-row'][data-record-id='rec-4']")
    assert await row.locator("[data-field='investment_focus']").inner_text() == (
        "Climate tech, Series A"
    )

    await page.get_by_label("Search investors").fill("northwind")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**/crm/?q=northwind")
    assert await page.locator("[data-field='match_count']").inner_text() == "1"
    assert await page.locator("[data-testid='crm-row']").count() == 1

    body = await state(client)
    assert body["crm"][-1] == {
        "id": "rec-4",
        "name": "Marcus Adeyemi",
        "company": "Northwind Capital",
        "email": "marcus@northwind.example",
        "phone": "+44 20 7946 0321",
        "investmentFocus": "Climate tech, Series A",
        "notes": "Asked for the data room.",
    }
    assert body["summary"] == {"processed": 0, "added": 1, "updated": 0}


@needs_browser
async def test_update_record(page: Page, demo: DemoServer, client: httpx.AsyncClient) -> None:
    await page.goto(f"{demo.base_url}/crm/")
    await page.get_by_label("Search investors").fill("sarah.chen@horizonvc.example")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/crm/?q=*")
    assert await page.locator("[data-field='match_count']").inner_text() == "1"

    await page.get_by_role("link", name="Edit Sarah Chen").click()
    await page.wait_for_url("**/crm/record/rec-1/edit")
    focus = page.get_by_label("Investment focus")
    assert await focus.input_value() == "Consumer marketplaces"
    await focus.fill("Seed-stage B2B SaaS")
    await page.get_by_label("Notes").fill("Wants to lead the seed round.")
    await page.get_by_role("button", name="Update record").click()
    await page.wait_for_url("**/crm/?updated=rec-1")

    body = await state(client)
    sarah = body["crm"][0]
    assert sarah["investmentFocus"] == "Seed-stage B2B SaaS"
    assert sarah["notes"] == "Wants to lead the seed round."
    assert sarah["email"] == "sarah.chen@horizonvc.example"  # untouched fields kept
    assert len(body["crm"]) == 3
    assert body["writes"] == [{"action": "update", "target": "rec-1"}]


@needs_browser
async def test_fault_knob_fails_twice_then_serves(
    page: Page, demo: DemoServer, client: httpx.AsyncClient
) -> None:
    created = await client.post("/demo/faults", json={"path": "/mail/login", "failures": 2})
    assert created.status_code == 201
    url = f"{demo.base_url}/mail/login"
    statuses = []
    for _ in range(3):
        response = await page.goto(url)
        assert response is not None
        statuses.append(response.status)
    assert statuses == [503, 503, 200]
    assert await page.get_by_label("Email address").is_visible()

    faults = (await client.get("/demo/faults")).json()["faults"]
    assert faults == [
        {
            "path": "/mail/login",
            "failures": 2,
            "status": 503,
            "delayMs": 0,
            "method": None,
            "remaining": 0,
            "failuresServed": 2,
        }
    ]


# --- HTTP contract --------------------------------------------------------------------------


async def test_session_is_required_for_mail(client: httpx.AsyncClient) -> None:
    for path in ("/mail/inbox", "/mail/thread/t1", "/mail/", "/mail/login/password"):
        response = await client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/mail/login")
    response = await client.post("/mail/thread/t1/processed")
    assert response.headers["location"] == "/mail/login"
    assert not any(e["processed"] for e in (await state(client))["emails"])


async def test_login_sets_a_session_and_logout_ends_it(client: httpx.AsyncClient) -> None:
    missing = await client.post("/mail/login", data={"email": ""})
    assert missing.status_code == 422
    assert "Enter an email address" in missing.text
    step1 = await client.post("/mail/login", data={"email": DEMO_EMAIL.upper()})
    assert step1.headers["location"] == "/mail/login/password"
    step2 = await client.post("/mail/login/password", data={"password": DEMO_PASSWORD})
    assert step2.headers["location"] == "/mail/inbox"
    assert (await client.get("/mail/inbox")).status_code == 200
    unknown = await client.get("/mail/thread/nope")
    assert unknown.status_code == 404
    assert "No such conversation" in unknown.text
    await client.post("/mail/logout")
    assert (await client.get("/mail/inbox")).status_code == 303


async def test_crm_validation_and_search(client: httpx.AsyncClient) -> None:
    bad = await client.post("/crm/new", data={"name": "", "email": "not-an-email"})
    assert bad.status_code == 422
    assert "Enter a name" in bad.text and "Enter an email address" in bad.text
    assert "aria-invalid='true'" in bad.text
    assert len((await state(client))["crm"]) == 3

    assert (await client.get("/crm/record/rec-99/edit")).status_code == 404
    bad_update = await client.post("/crm/record/rec-2/edit", data={"name": "Daniel Kim"})
    assert bad_update.status_code == 422

    for query, count in (("", 3), ("VENTURES", 2), ("daniel@bluebird", 1), ("zzz", 0)):
        page = await client.get("/crm/", params={"q": query})
        assert f"<span data-field='match_count'>{count}</span>" in page.text
        assert page.text.count("data-testid='crm-row'") == count
    assert "No matching records" in (await client.get("/crm/?q=zzz")).text


async def test_markup_is_escaped(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/crm/new", data={"name": "<script>x</script>", "email": "a@b.example"}
    )
    assert response.status_code == 303
    listing = await client.get("/crm/")
    assert "<script>x</script>" not in listing.text
    assert "&lt;script&gt;x&lt;/script&gt;" in listing.text


async def test_reset_restores_the_seed_and_clears_faults(client: httpx.AsyncClient) -> None:
    await client.post("/crm/new", data={"name": "A", "email": "a@b.example"})
    await client.post("/demo/faults", json={"path": "/crm/*", "failures": 5})
    assert (await client.get("/crm/")).status_code == 503
    reset = await client.post("/demo/reset")
    assert reset.status_code == 200
    assert len(reset.json()["crm"]) == 3
    assert reset.json()["writes"] == []
    assert (await client.get("/demo/faults")).json() == {"faults": []}
    assert (await client.get("/crm/")).status_code == 200
    # Ids restart with the seed, so runs are deterministic.
    again = await client.post("/crm/new", data={"name": "B", "email": "b@b.example"})
    assert again.headers["location"] == "/crm/?created=rec-4"


async def test_fault_matching_by_prefix_and_method(client: httpx.AsyncClient) -> None:
    await client.post(
        "/demo/faults", json={"path": "/crm/*", "failures": 1, "status": 500, "method": "POST"}
    )
    assert (await client.get("/crm/")).status_code == 200  # GET is not affected
    failed = await client.post("/crm/new", data={"name": "A", "email": "a@b.example"})
    assert failed.status_code == 500
    assert failed.headers["retry-after"] == "1"
    ok = await client.post("/crm/new", data={"name": "A", "email": "a@b.example"})
    assert ok.status_code == 303
    # /demo/* is never faulted, so tests can always recover.
    await client.post("/demo/faults", json={"path": "/*", "failures": 3})
    assert (await client.get("/demo/state")).status_code == 200
    assert (await client.delete("/demo/faults")).json() == {"faults": []}


@pytest.mark.parametrize(
    "body",
    [
        {"failures": 1},
        {"path": "no-slash"},
        {"path": "/x", "failures": -1},
        {"path": "/x", "status": 200},
        {"path": "/x", "delayMs": 60_000},
        {"path": "/x", "bogus": True},
        "not json",
    ],
)
async def test_bad_fault_specs_are_refused(client: httpx.AsyncClient, body: object) -> None:
    if isinstance(body, str):
        response = await client.post("/demo/faults", content=body)
    else:
        response = await client.post("/demo/faults", json=body)
    assert response.status_code == 422
    assert (await client.get("/demo/faults")).json() == {"faults": []}


async def test_delay_knobs(client: httpx.AsyncClient) -> None:
    start = time.monotonic()
    assert (await client.get("/crm/", params={"delay_ms": "250"})).status_code == 200
    assert time.monotonic() - start >= 0.25

    await client.post("/demo/faults", json={"path": "/crm/new", "delayMs": 1500})
    start = time.monotonic()
    assert (await client.get("/crm/new")).status_code == 200
    assert time.monotonic() - start >= 1.5
    start = time.monotonic()
    assert (await client.get("/crm/")).status_code == 200
    assert time.monotonic() - start < 1.5  # the fault's delay is for its own path only


async def test_each_app_has_its_own_state() -> None:
    first, second = create_demo_app(), create_demo_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first), base_url="http://demo"
    ) as http:
        await http.post("/crm/new", data={"name": "A", "email": "a@b.example"})
    assert len(first.state.demo.records) == 4
    assert len(second.state.demo.records) == 3


def test_servers_run_side_by_side() -> None:
    with serve_demo() as one, serve_demo() as two:
        assert one.base_url != two.base_url
        assert httpx.get(f"{one.base_url}/demo/state").status_code == 200
        assert httpx.get(f"{two.base_url}/crm/").status_code == 200
