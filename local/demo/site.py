"""The local demo web site AEF's demo workflow runs against: a webmail inbox and a CRM table.

The real targets of the recorded SOPs (Gmail, Airtable) are not reachable from tests, so this
small server-rendered site imitates them: a two-step login like Google's, an inbox whose
emails show sender details and a category, and an investor table with search, add and
update. The markup is plain HTML forms with labels, button names and landmarks, so both
concrete selectors and grounding by role/label work on it; there is no JavaScript.

State lives in memory per app instance (``create_demo_app()`` returns a fresh one).
``/demo/*`` is a JSON side door for tests and the demo summary: read the state, reset it to
the seed, and inject faults (N failures with a status, or a delay) into chosen paths.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from local.demo.seed import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_USER_NAME,
    Email,
    Record,
    seed_emails,
    seed_records,
)

__all__ = ["DemoState", "FaultSpec", "create_demo_app"]

SESSION_COOKIE = "demo_session"
LOGIN_COOKIE = "demo_login_email"
MAX_FORM_BYTES = 65_536
MAX_DELAY_MS = 10_000


# --- state --------------------------------------------------------------------------------


class FaultSpec(BaseModel):
    """``POST /demo/faults`` body: make ``path`` fail ``failures`` times, and/or delay it.

    ``path`` is exact (``/mail/inbox``) or a prefix ending in ``*`` (``/crm/*``); ``method``
    limits the fault to one HTTP method. The delay applies to every matching request while
    the fault is installed; failures count down to zero, then requests pass.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    path: str = Field(pattern=r"^/")
    failures: int = Field(default=0, ge=0, le=1000)
    status: int = Field(default=503, ge=400, le=599)
    delay_ms: int = Field(default=0, ge=0, le=MAX_DELAY_MS)
    method: str | None = None


@dataclass
class _Fault:
    spec: FaultSpec
    remaining: int
    served: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.spec.method and self.spec.method.upper() != method:
            return False
        pattern = self.spec.path
        return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern

    def to_json(self) -> dict[str, Any]:
        return {
            **self.spec.model_dump(by_alias=True),
            "remaining": self.remaining,
            "failuresServed": self.served,
        }


@dataclass
class DemoState:
    """Everything the site remembers; ``reset()`` restores the seed and clears faults.

    Sessions survive a reset on purpose, so a browser that is logged in stays logged in when a
    test or the demo resets the data between runs.
    """

    user_email: str = DEMO_EMAIL
    user_password: str = DEMO_PASSWORD
    emails: dict[str, Email] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    writes: list[dict[str, str]] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    next_record: int = 1

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.emails = {e.id: e for e in seed_emails()}
        self.records = {r.id: r for r in seed_records()}
        self.next_record = len(self.records) + 1
        self.writes = []
        self.faults = []

    def add_record(self, values: dict[str, str]) -> Record:
        record = Record(id=f"rec-{self.next_record}", **values)
        self.next_record += 1
        self.records[record.id] = record
        self.writes.append({"action": "add", "target": record.id})
        return record

    def update_record(self, record: Record, values: dict[str, str]) -> None:
        for name, value in values.items():
            setattr(record, name, value)
        self.writes.append({"action": "update", "target": record.id})

    def mark_processed(self, email: Email) -> None:
        if not email.processed:
            email.processed = True
            self.writes.append({"action": "mark_processed", "target": email.id})

    def search(self, query: str) -> list[Record]:
        needle = query.strip().casefold()
        return [
            r
            for r in self.records.values()
            if not needle or any(needle in v.casefold() for v in (r.name, r.company, r.email))
        ]

    def to_json(self) -> dict[str, Any]:
        count = {a: sum(w["action"] == a for w in self.writes) for a in ("add", "update")}
        return {
            "emails": [
                {
                    "id": e.id,
                    "sender": e.sender,
                    "senderEmail": e.sender_email,
                    "subject": e.subject,
                    "category": e.category,
                    "processed": e.processed,
                }
                for e in self.emails.values()
            ],
            "crm": [{to_camel(k): v for k, v in asdict(r).items()} for r in self.records.values()],
            "writes": list(self.writes),
            "summary": {
                "processed": sum(e.processed for e in self.emails.values()),
                "added": count["add"],
                "updated": count["update"],
            },
        }


# --- faults -------------------------------------------------------------------------------


class _FaultInjector:
    """ASGI middleware: delays (``?delay_ms=`` or an installed fault) and injected failures.

    ``/demo/*`` is never affected, so a test can always read state and clear faults.
    """

    def __init__(self, app: ASGIApp, state: DemoState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/demo/"):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        delay_ms = _int_or_zero(query.get("delay_ms", ["0"])[0])
        fault = next((f for f in self.state.faults if f.matches(scope["method"], path)), None)
        if fault is not None:
            delay_ms += fault.spec.delay_ms
        if delay_ms > 0:
            await asyncio.sleep(min(delay_ms, MAX_DELAY_MS) / 1000)
        if fault is not None and fault.remaining > 0:
            fault.remaining -= 1
            fault.served += 1
            response = _page(
                "Service unavailable",
                "<h1>Service temporarily unavailable</h1>"
                "<p role='alert'>The server is busy. Please try again in a moment.</p>",
                status_code=fault.spec.status,
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _int_or_zero(text: str) -> int:
    return int(text) if text.isdigit() and len(text) < 7 else 0


# --- HTML helpers -------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;padding:.5rem 1rem}header a{color:#fff;margin-right:1rem}
main{max-width:60rem;margin:1rem auto;background:#fff;padding:1rem 2rem;border-radius:8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;
border-bottom:1px solid #d0d7de}label{display:block;margin-top:.6rem;font-weight:600}
input,textarea{width:24rem;max-width:100%;padding:.3rem}button{margin-top:.8rem;padding:.4rem 1rem}
[role=alert]{color:#b42318}[role=status]{color:#1a7f37}.muted{color:#57606a}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
dl{display:grid;grid-template-columns:10rem 1fr;gap:.3rem}dt{font-weight:600}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(
    title: str,
    body: str,
    *,
    app_name: str = "AEF demo",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)} - {esc(app_name)}</title><style>{_STYLE}</style></head><body>"
        "<header><nav aria-label='Demo applications'>"
        "<a href='/mail/inbox'>Demo Mail</a><a href='/crm/'>Demo CRM</a></nav></header>"
        f"<main id='main'>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status_code, headers=headers)


def _field(
    name: str,
    label: str,
    value: str = "",
    *,
    kind: str = "text",
    error: str | None = None,
    required: bool = False,
    autocomplete: str | None = None,
) -> str:
    """A labelled input whose error is announced and tied to it (aria-describedby)."""
    attrs = f"id='{name}' name='{name}'"
    if required:
        attrs += " required"
    if autocomplete:
        attrs += f" autocomplete='{autocomplete}'"
    if error:
        attrs += f" aria-invalid='true' aria-describedby='{name}-error'"
    control = (
        f"<textarea {attrs} rows='4'>{esc(value)}</textarea>"
        if kind == "textarea"
        else f"<input type='{kind}' {attrs} value='{esc(value)}'>"
    )
    message = f"<p role='alert' id='{name}-error'>{esc(error)}</p>" if error else ""
    return f"<div><label for='{name}'>{esc(label)}</label>{control}{message}</div>"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form body as {name: first value}; multipart is not needed here."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "Form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _state(request: Request) -> DemoState:
    state: DemoState = request.app.state.demo
    return state


def _logged_in(request: Request) -> bool:
    return request.cookies.get(SESSION_COOKIE, "") in _state(request).sessions


# --- mail ---------------------------------------------------------------------------------


def _login_email_page(email: str = "", error: str | None = None) -> HTMLResponse:
    body = (
        "<h1>Sign in</h1><p>to continue to Demo Mail</p>"
        "<form method='post' action='/mail/login'>"
        + _field(
            "email",
            "Email address",
            email,
            kind="email",
            error=error,
            required=True,
            autocomplete="username",
        )
        + "<button type='submit'>Next</button></form>"
    )
    return _page("Sign in", body, app_name="Demo Mail", status_code=422 if error else 200)


def _login_password_page(email: str, error: str | None = None) -> HTMLResponse:
    body = (
        f"<h1>Welcome</h1><p data-field='login_email'>{esc(email)}</p>"
        "<form method='post' action='/mail/login/password'>"
        + _field(
            "password",
            "Password",
            kind="password",
            error=error,
            required=True,
            autocomplete="current-password",
        )
        + "<button type='submit'>Sign in</button></form>"
        "<p><a href='/mail/login'>Use another account</a></p>"
    )
    return _page(
        "Enter your password", body, app_name="Demo Mail", status_code=422 if error else 200
    )


async def mail_root(request: Request) -> Response:
    return _redirect("/mail/inbox" if _logged_in(request) else "/mail/login")


async def login(request: Request) -> Response:
    if request.method == "GET":
        return _login_email_page()
    email = (await _form(request)).get("email", "").strip()
    if not email:
        return _login_email_page(error="Enter an email address")
    if email.casefold() != _state(request).user_email.casefold():
        return _login_email_page(email, "Couldn't find your Demo Mail account")
    response = _redirect("/mail/login/password")
    response.set_cookie(
        LOGIN_COOKIE, quote(email), httponly=True, samesite="lax", path="/mail/login"
    )
    return response


async def login_password(request: Request) -> Response:
    state = _state(request)
    email = request.cookies.get(LOGIN_COOKIE, "")
    if not email or email.casefold() != quote(state.user_email).casefold():
        return _redirect("/mail/login")
    if request.method == "GET":
        return _login_password_page(state.user_email)
    password = (await _form(request)).get("password", "")
    if not secrets.compare_digest(password.encode(), state.user_password.encode()):
        return _login_password_page(state.user_email, "Wrong password. Try again.")
    token = secrets.token_urlsafe(24)
    state.sessions.add(token)
    response = _redirect("/mail/inbox")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/mail/login")
    return response


async def logout(request: Request) -> Response:
    _state(request).sessions.discard(request.cookies.get(SESSION_COOKIE, ""))
    response = _redirect("/mail/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def inbox(request: Request) -> Response:
    if not _logged_in(request):
        return _redirect("/mail/login")
    emails = list(_state(request).emails.values())
    rows = "".join(
        f"<tr data-thread-id='{esc(e.id)}' data-processed='{str(e.processed).lower()}'>"
        f"<td data-field='sender'>{esc(e.sender)}</td>"
        f"<td><a href='/mail/thread/{esc(e.id)}' data-field='subject'>{esc(e.subject)}</a></td>"
        f"<td><time datetime='{esc(e.received)}'>{esc(e.received)}</time></td>"
        f"<td data-field='status'>{'Processed' if e.processed else 'New'}</td></tr>"
        for e in emails
    )
    unprocessed = sum(not e.processed for e in emails)
    body = (
        f"<h1>Inbox</h1><p class='muted'>Signed in as {esc(DEMO_USER_NAME)} "
        f"({esc(_state(request).user_email)})</p>"
        f"<p role='status'><span data-field='unprocessed_count'>{unprocessed}</span> "
        "unprocessed conversations</p>"
        "<table aria-label='Inbox'><thead><tr><th scope='col'>From</th>"
        "<th scope='col'>Subject</th><th scope='col'>Received</th><th scope='col'>Status</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
        "<form method='post' action='/mail/logout'><button type='submit'>Sign out</button></form>"
    )
    return _page("Inbox", body, app_name="Demo Mail")


def _email_or_404(request: Request) -> Email:
    email = _state(request).emails.get(request.path_params["thread_id"])
    if email is None:
        raise HTTPException(404, "No such conversation")
    return email


async def thread(request: Request) -> Response:
    if not _logged_in(request):
        return _redirect("/mail/login")
    e = _email_or_404(request)
    details = [
        ("Name", "name", e.sender),
        ("Company", "company", e.company),
        ("Email", "email", e.sender_email),
        ("Phone", "phone", e.phone or "Not provided"),
        ("Investment focus", "investment_focus", e.investment_focus or "None stated"),
        ("Summary", "message_summary", e.summary),
    ]
    rows = "".join(
        f"<dt>{esc(label)}</dt><dd data-field='{name}'>{esc(value)}</dd>"
        for label, name, value in details
    )
    paragraphs = "".join(f"<p>{esc(p)}</p>".replace("\n", "<br>") for p in e.body.split("\n\n"))
    status = "<p role='status' data-field='processed_status'>Processed</p>" if e.processed else ""
    body = (
        f"<article aria-labelledby='subject' data-thread-id='{esc(e.id)}' "
        f"data-processed='{str(e.processed).lower()}'>"
        f"<h1 id='subject'>{esc(e.subject)}</h1>"
        f"<p>Category: <span data-field='category'>{esc(e.category)}</span></p>"
        f"<p class='muted'>Received <time datetime='{esc(e.received)}'>{esc(e.received)}</time>"
        "</p>"
        f"<h2>Sender</h2><dl aria-label='Sender details'>{rows}</dl>"
        f"<h2>Message</h2><section aria-label='Message body' data-field='body'>{paragraphs}"
        f"</section>{status}"
        f"<form method='post' action='/mail/thread/{esc(e.id)}/processed'>"
        "<button type='submit'>Mark as processed</button></form>"
        "<p><a href='/mail/inbox'>Back to inbox</a></p></article>"
    )
    return _page(e.subject, body, app_name="Demo Mail")


async def mark_processed(request: Request) -> Response:
    if not _logged_in(request):
        return _redirect("/mail/login")
    email = _email_or_404(request)
    _state(request).mark_processed(email)
    return _redirect(f"/mail/thread/{email.id}")


# --- CRM ----------------------------------------------------------------------------------

_RECORD_FIELDS = (
    ("name", "Name", "text"),
    ("company", "Company", "text"),
    ("email", "Email", "email"),
    ("phone", "Phone", "tel"),
    ("investment_focus", "Investment focus", "text"),
    ("notes", "Notes", "textarea"),
)


async def crm_list(request: Request) -> Response:
    state = _state(request)
    query = request.query_params.get("q", "")
    records = state.search(query)
    flash = ""
    for param, verb in (("created", "Added"), ("updated", "Updated")):
        record = state.records.get(request.query_params.get(param, ""))
        if record is not None:
            flash += (
                f"<p role='status' data-field='flash'>{verb} record for {esc(record.name)}.</p>"
            )
    header = "".join(f"<th scope='col'>{esc(label)}</th>" for _, label, _ in _RECORD_FIELDS)
    rows = (
        "".join(
            f"<tr data-testid='crm-row' data-record-id='{esc(r.id)}'>"
            + "".join(
                f"<td data-field='{name}'>{esc(getattr(r, name))}</td>"
                for name, _, _ in _RECORD_FIELDS
            )
            + f"<td><a href='/crm/record/{esc(r.id)}/edit' data-testid='edit-record-link' "
            f"aria-label='Edit {esc(r.name)}'>Edit</a></td></tr>"
            for r in records
        )
        or f"<tr><td colspan='{len(_RECORD_FIELDS) + 1}'>No matching records</td></tr>"
    )
    noun = "matching record" if query.strip() else "record"
    body = (
        f"<h1>Investors</h1>{flash}"
        "<form role='search' method='get' action='/crm/'>"
        "<label for='crm-search'>Search investors</label>"
        f"<input type='search' id='crm-search' name='q' value='{esc(query)}'>"
        "<button type='submit'>Search</button></form>"
        f"<p><span data-field='match_count'>{len(records)}</span> "
        f"{noun}{'' if len(records) == 1 else 's'}</p>"
        "<form method='get' action='/crm/new'>"
        "<button type='submit' data-testid='add-record-button'>Add record</button></form>"
        "<table aria-label='Investor records' data-testid='crm-table'><thead><tr>"
        f"{header}<th scope='col'><span class='visually-hidden'>Actions</span></th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return _page("Investors", body, app_name="Demo CRM")


def _record_form(
    action: str,
    heading: str,
    submit: str,
    values: dict[str, str],
    errors: dict[str, str],
) -> HTMLResponse:
    fields = "".join(
        _field(
            name,
            label,
            values.get(name, ""),
            kind=kind,
            error=errors.get(name),
            required=name in ("name", "email"),
        )
        for name, label, kind in _RECORD_FIELDS
    )
    summary = "<p role='alert'>Fix the highlighted fields and save again.</p>" if errors else ""
    body = (
        f"<h1>{esc(heading)}</h1>{summary}"
        f"<form method='post' action='{esc(action)}'>{fields}"
        f"<button type='submit'>{esc(submit)}</button> <a href='/crm/'>Cancel</a></form>"
    )
    return _page(heading, body, app_name="Demo CRM", status_code=422 if errors else 200)


def _clean(form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    values = {name: form.get(name, "").strip() for name, _, _ in _RECORD_FIELDS}
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Enter a name"
    if "@" not in values["email"]:
        errors["email"] = "Enter an email address like name@example.com"
    return values, errors


async def crm_new(request: Request) -> Response:
    if request.method == "GET":
        return _record_form("/crm/new", "New investor record", "Save record", {}, {})
    values, errors = _clean(await _form(request))
    if errors:
        return _record_form("/crm/new", "New investor record", "Save record", values, errors)
    record = _state(request).add_record(values)
    return _redirect(f"/crm/?created={record.id}")


async def crm_edit(request: Request) -> Response:
    state = _state(request)
    record = state.records.get(request.path_params["record_id"])
    if record is None:
        raise HTTPException(404, "No such record")
    action = f"/crm/record/{record.id}/edit"
    heading = f"Edit {record.name}"
    if request.method == "GET":
        values = {name: getattr(record, name) for name, _, _ in _RECORD_FIELDS}
        return _record_form(action, heading, "Update record", values, {})
    values, errors = _clean(await _form(request))
    if errors:
        return _record_form(action, heading, "Update record", values, errors)
    state.update_record(record, values)
    return _redirect(f"/crm/?updated={record.id}")


# --- side door for tests and the demo summary ---------------------------------------------


async def demo_state(request: Request) -> Response:
    return JSONResponse(_state(request).to_json())


async def demo_reset(request: Request) -> Response:
    state = _state(request)
    state.reset()
    return JSONResponse(state.to_json())


async def demo_faults(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            spec = FaultSpec.model_validate(json.loads(await request.body() or b"null"))
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": "invalid fault", "detail": str(exc)}, status_code=422)
        fault = _Fault(spec, remaining=spec.failures)
        state.faults = [f for f in state.faults if f.spec.path != spec.path] + [fault]
        return JSONResponse(fault.to_json(), status_code=201)
    if request.method == "DELETE":
        state.faults = []
    return JSONResponse({"faults": [f.to_json() for f in state.faults]})


async def index(request: Request) -> Response:
    body = (
        "<h1>AEF demo site</h1><ul>"
        "<li><a href='/mail/login'>Demo Mail</a>: an inbox with investor emails</li>"
        "<li><a href='/crm/'>Demo CRM</a>: the investor table</li></ul>"
    )
    return _page("Home", body)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Server error"
    return _page(detail, f"<h1>{esc(detail)}</h1><p><a href='/'>Home</a></p>", status_code=status)


def _routes() -> Iterable[Route]:
    both = ["GET", "POST"]
    return [
        Route("/", index),
        Route("/mail/", mail_root),
        Route("/mail/login", login, methods=both),
        Route("/mail/login/password", login_password, methods=both),
        Route("/mail/logout", logout, methods=["POST"]),
        Route("/mail/inbox", inbox),
        Route("/mail/thread/{thread_id}", thread),
        Route("/mail/thread/{thread_id}/processed", mark_processed, methods=["POST"]),
        Route("/crm/", crm_list),
        Route("/crm/new", crm_new, methods=both),
        Route("/crm/record/{record_id}/edit", crm_edit, methods=both),
        Route("/demo/state", demo_state),
        Route("/demo/reset", demo_reset, methods=["POST"]),
        Route("/demo/faults", demo_faults, methods=["GET", "POST", "DELETE"]),
    ]


def create_demo_app(*, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> Starlette:
    """A fresh demo site with its own in-memory state (``app.state.demo``)."""
    state = DemoState(user_email=email, user_password=password)
    app = Starlette(
        routes=list(_routes()),
        middleware=[Middleware(_FaultInjector, state=state)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.demo = state
    return app
