"""Every page and every form of the web app accepts ordinary input (issue 14, item 8).

The walk reads the app's own routes (`app.routes`, included routers opened up), so a
route added tomorrow is walked without touching this file; a path parameter the walk
has no demo value for fails the test, naming the route.

Each GET page is opened, its path filled from the demo cohort, as every role and as
nobody signed in: the roles that may see it get 2xx, or a redirect to a page that
answers 2xx; the others get 403 (signed out: the sign-in page). On every HTML page each
<form> is submitted as a browser submits it with its defaults, once per submit button,
from a fresh load of the page: a GET form must answer 2xx (also with each of its
options picked in turn); a POST form 2xx or a redirect to a page that answers 2xx, or
4xx only when the page it returns marks the field to fix (aria-invalid, as
tracker/web/templates/_field.j2 does). Local links are followed too (once per route
and set of query keys), so "Record it", the pager and the timeline's edit links are
walked with the values the app itself puts in them. Every POST route of the pages must
be reached by some form.

A download (`report.{fmt}`) is made once, by the first role that may have it: it is the
same file for every role, and a PDF takes seconds. Failures are collected and reported
together, a block per route, so one run names every route that refuses its own form's
defaults.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from starlette.routing import Mount, compile_path

from tests.web.form_walk import HtmlForm, Submission, forms_in, links_in, marked
from tests.web.web_support import (
    ROLES,
    api_token,
    make_client_on,
    plan_reminders,
    sign_in,
)
from tracker.services.users import add_user, deactivate
from tracker.web.app import API_PREFIX
from tracker.web.formspec import FORMS, NEW_FORMS

TODAY = dt.date(2026, 11, 3)  # a few days after the demo's latest records
PRIMARY_MRN = "H-EARLY"  # injury, imaging, bone scans, labs and an open course
ANONYMOUS = "signed out"
JSON_PREFIXES = (API_PREFIX, "/fhir")

# Forms destructive by design, never submitted by the walk (their routes are still
# checked to exist): signing out would end the walker's session, and disabling a user
# locks them out and revokes their API tokens (the walk re-enables a disabled user
# instead, through the Re-enable form).
NOT_SUBMITTED = {
    "/signout": "ends the walker's own session",
    "/admin/users/{user_id}/disable": "locks the user out and revokes their tokens",
}
# Destructive forms that are submitted all the same: with their defaults they must be
# refused with this field marked (voiding needs a reason), never carried out.
REFUSED_WITH_DEFAULTS = {"/patients/{mrn}/{slug}/{record_id}/void": "reason"}
# Path parameters that make a different page (a link to another kind of record is
# walked; a link to another patient's page of the same kind is not).
KIND_PARAMS = ("slug", "fmt")
REPORT_FORMATS = ("html", "pdf")
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


# --- the demo values a route's path is filled with -----------------------------------------


def _table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


@dataclass
class DemoValues:
    """Path values taken from the stored demo cohort (never typed in here), by what the
    parameter names: a record of each form's kind, an open course, users to administer."""

    engine: Engine
    active_user: int
    disabled_user: int
    admin_user: int

    def _live(self, table: str, where: Any = None) -> list[dict[str, Any]]:
        t, patient = _table(table), _table("patient")
        query = (
            sa.select(t.c.id, patient.c.mrn)
            .join(patient, patient.c.id == t.c.patient_id)
            .where(t.c.voided_at.is_(None))
            .order_by(patient.c.mrn == PRIMARY_MRN, t.c.id)  # another patient's first
        )
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def records(self) -> list[dict[str, Any]]:
        """One stored record for each correctable kind: {slug, mrn, record_id}."""
        out = []
        for slug, spec in FORMS.items():
            found = self._live(spec.entity)
            assert found, f"the demo cohort has no {spec.entity} for the {slug!r} forms"
            out.append({"slug": slug, "mrn": found[0]["mrn"], "record_id": found[0]["id"]})
        return out

    def open_course(self) -> dict[str, Any]:
        course = _table("treatment_course")
        found = self._live("treatment_course", course.c.end_date.is_(None))
        assert found, "the demo cohort has no open treatment course to stop"
        return {"mrn": found[0]["mrn"], "course_id": found[0]["id"]}

    def open_reminder(self) -> dict[str, Any]:
        reminder, patient = _table("reminder"), _table("patient")
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(reminder.c.id, patient.c.mrn)
                .join(patient, patient.c.id == reminder.c.patient_id)
                .where(reminder.c.status.in_(("pending", "due", "sent")))
                .order_by(reminder.c.id)
                .limit(1)
            ).one_or_none()
        assert row is not None, "the walk planned no open reminder"
        return {"mrn": row.mrn, "reminder_id": row.id}

    def fill(self, path: str) -> list[str]:
        """Every URL the walk opens for the route `path`. A parameter without a demo
        value fails here, loudly: add its value rather than skipping the route."""
        names = PARAM.findall(path)
        combos: list[dict[str, Any]] = [{}]
        # parameters naming one patient's record, filled together with that patient
        bound = [
            group
            for group in (("slug", "record_id"), ("course_id",), ("reminder_id",))
            if set(group) <= set(names)
        ]
        if len(bound) > 1:
            pytest.fail(f"{path}: the walk cannot fill {bound} together; teach DemoValues.fill")
        if bound == [("slug", "record_id")]:
            combos = self.records()
        elif bound == [("course_id",)]:
            combos = [self.open_course()]
        elif bound == [("reminder_id",)]:
            combos = [self.open_reminder()]
        elif "slug" in names:
            combos = [{"slug": slug} for slug in NEW_FORMS]
        for name in names:
            if combos and name in combos[0]:
                continue
            if name == "mrn":
                values: list[Any] = [PRIMARY_MRN]
            elif name == "fmt":
                values = list(REPORT_FORMATS)
            elif name == "user_id":
                values = [self.active_user, self.disabled_user, self.admin_user]
            else:
                pytest.fail(
                    f"route {path}: the walk has no demo value for {{{name}}}; add one to "
                    "DemoValues.fill so the route is walked"
                )
            combos = [{**c, name: v} for c in combos for v in values]
        return [filled(path, combo) for combo in combos]


def filled(path: str, values: dict[str, Any]) -> str:
    """The route template `path` with its parameters replaced by `values`."""
    return PARAM.sub(lambda m: str(values[m.group(1)]), path)


# --- the app's routes ------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    path: str  # the template, with the prefix of its router: /patients/{mrn}/{slug}/new
    methods: frozenset[str]
    regex: re.Pattern[str]
    convertors: dict[str, Any]


def all_routes(app: FastAPI) -> list[RouteInfo]:
    """Every route the app serves, in the order it matches them, with included routers
    opened up (FastAPI wraps them: `original_router`, `include_context.prefix`)."""

    def flatten(routes: list[Any], prefix: str) -> Iterator[RouteInfo]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                yield from flatten(inner.routes, prefix + getattr(context, "prefix", ""))
            elif isinstance(route, Mount):
                continue  # static files are not pages
            elif getattr(route, "methods", None):
                path = prefix + route.path
                regex, _, convertors = compile_path(path)
                yield RouteInfo(path, frozenset(route.methods), regex, convertors)

    return list(flatten(app.routes, ""))


def routes_of(app: FastAPI, method: str) -> list[RouteInfo]:
    return [r for r in all_routes(app) if method in r.methods]


def is_json_route(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


def route_of(app: FastAPI, method: str, url: str) -> tuple[RouteInfo, dict[str, Any]] | None:
    """The route that serves `method url`, and its path parameters (None: a 404)."""
    path = urlsplit(url).path
    if path.startswith("/static/"):
        return None
    for route in all_routes(app):
        found = route.regex.match(path)
        if found and method in route.methods:
            params = {k: route.convertors[k].convert(v) for k, v in found.groupdict().items()}
            return route, params
    return None


# --- the walk --------------------------------------------------------------------------------


@dataclass
class Walk:
    app: FastAPI
    clients: dict[str, TestClient]
    failures: dict[str, list[str]] = field(default_factory=dict)  # by route
    seen_by: dict[str, set[str]] = field(default_factory=dict)  # GET route -> roles shown it
    posted: dict[str, int] = field(default_factory=dict)  # POST route -> forms submitted
    pages: set[tuple[Any, ...]] = field(default_factory=set)
    forms: set[tuple[Any, ...]] = field(default_factory=set)

    def fail(self, role: str, what: str, why: str, *, at: tuple[str, str]) -> None:
        """Record a failure under the route of `at` (method, URL or template)."""
        method, url = at
        found = route_of(self.app, method.upper(), url)
        route = f"{method.upper()} {found[0].path if found else urlsplit(url).path}"
        said = f"[{role}] {what}: {why}"
        if said not in self.failures.setdefault(route, []):
            self.failures[route].append(said)

    def report(self) -> str:
        """One block per failing route, with at most three examples."""
        lines = []
        for route, said in sorted(self.failures.items()):
            more = f" (and {len(said) - 3} more like these)" if len(said) > 3 else ""
            lines += [f"{route}{more}", *(f"    {line}" for line in said[:3])]
        return "\n".join(lines)

    def request(self, role: str, method: str, url: str, **kw: Any) -> Any:
        """The response, or None after recording what the server raised (a 500)."""
        try:
            return self.clients[role].request(method.upper(), url, **kw)
        except Exception as error:  # the test client re-raises the app's own errors
            self.fail(
                role, f"{method.upper()} {url}", f"500: {type(error).__name__}: {error}",
                at=(method, url),
            )  # fmt: skip
            return None

    def landing(
        self, role: str, what: str, response: Any, at: tuple[str, str], hops: int = 5
    ) -> Any:
        """Where a redirect lands (GET, as a browser follows a 303), checked to be 2xx."""
        while response is not None and response.is_redirect and hops:
            target = response.headers["location"]
            if urlsplit(target).netloc not in ("", "testserver"):
                return response
            if role != ANONYMOUS and urlsplit(target).path == "/signin":
                self.fail(role, what, f"sends a signed-in user to sign in ({target})", at=at)
                return None
            response = self.request(role, "get", target)
            hops -= 1
        if response is not None and not response.is_success:
            self.fail(role, what, f"lands on {response.status_code} {_gist(response)}", at=at)
            return None
        return response

    def refused_for(self, role: str, response: Any) -> bool:
        """The role may not see this page: 403 signed in, or sent to sign in."""
        if role == ANONYMOUS:
            target = urlsplit(response.headers.get("location", "")).path
            return response.status_code == 401 or (response.is_redirect and target == "/signin")
        return response.status_code == 403

    def page_key(self, role: str, url: str) -> tuple[Any, ...] | None:
        found = route_of(self.app, "GET", url)
        if found is None:
            return None
        route, params = found
        kind = tuple(params.get(k) for k in KIND_PARAMS)
        if "fmt" in params:  # a download is the same file for every role: made once
            return ("any role", route.path, kind)
        query = frozenset(k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True))
        return (role, route.path, kind, query)

    def open(self, role: str, url: str, *, listed: bool) -> None:
        """GET a page (`listed`: filled from a route, else followed from a link), then
        submit its forms and queue its links."""
        queue = [(url, listed)]
        while queue:
            url, listed = queue.pop(0)
            found = route_of(self.app, "GET", url)
            if found is None:
                self.fail(role, f"link {url}", "no route serves it (404)", at=("get", url))
                continue
            key = self.page_key(role, url)
            assert key is not None
            shared = key[0] == "any role"
            if key in self.pages and (not listed or shared):
                continue
            if not shared:
                self.pages.add(key)
            response = self.request(role, "get", url)
            if response is None:
                continue
            if self.refused_for(role, response):
                if not listed and role != ANONYMOUS:  # signed out, a link leads to sign-in
                    self.fail(
                        role, f"link {url}", f"shown to this role, answers {response.status_code}",
                        at=("get", url),
                    )  # fmt: skip
                continue
            self.pages.add(key)
            self.seen_by.setdefault(found[0].path, set()).add(role)
            page = self.landing(role, f"GET {url}", response, ("get", url))
            if page is None or "text/html" not in page.headers.get("content-type", ""):
                continue
            landed = urlsplit(str(page.url))
            here = landed.path + (f"?{landed.query}" if landed.query else "")
            # the forms of a listed page are all submitted (each user's page may differ);
            # those of a linked page once per kind of page (not each row's Acknowledge)
            page_id = url if listed else key
            for index, form in enumerate(forms_in(page.text, here)):
                self.submit_all(role, here, page_id, index, form)
            for link in links_in(page.text, here):
                path = urlsplit(link).path
                if is_json_route(path) or path.startswith("/static/"):
                    continue
                if self.page_key(role, link) not in self.pages:
                    queue.append((link, False))

    def submit_all(self, role: str, page: str, page_id: Any, index: int, form: HtmlForm) -> None:
        variants = form.submissions()
        if form.method == "get":  # a filter must take every option it offers
            for control in form.controls:
                defaults = dict(control.sent())
                for choice in control.choices():
                    if choice != defaults.get(control.name):
                        variants += form.submissions({control.name: choice})
                if control.kind == "checkbox" and not control.checked:
                    variants += form.submissions({control.name: control.value or "on"})
        for submission in variants:
            found = route_of(self.app, submission.method.upper(), submission.url)
            if found is None:
                self.fail(
                    role, f"form on {page}", f"{submission.describe()}: no route serves it",
                    at=(submission.method, submission.url),
                )  # fmt: skip
                continue
            route = found[0].path
            key = (
                role,
                page_id,
                submission.method,
                route,
                tuple(found[1].get(k) for k in KIND_PARAMS),
                tuple(sorted(form.names)),
                submission.button,
                submission.changed,
            )
            if key in self.forms:
                continue
            self.forms.add(key)
            if route in NOT_SUBMITTED:
                self.posted[route] = self.posted.get(route, 0)
                continue
            if submission.method == "post":
                submission = self.fresh(role, page, index, form, submission)
                self.posted[route] = self.posted.get(route, 0) + 1
            self.check(role, page, route, submission)

    def fresh(
        self, role: str, page: str, index: int, form: HtmlForm, submission: Submission
    ) -> Submission:
        """The same submission from a fresh load of the page, as a user sends one form
        per page load (another form's save has moved the record's version on since)."""
        response = self.request(role, "get", page)
        if response is None or not response.is_success:
            return submission
        again = forms_in(response.text, page)
        same = [f for f in again if f.action == form.action and f.names == form.names]
        if not same:
            return submission
        for candidate in same[0].submissions():
            if candidate.button == submission.button:
                return candidate
        return submission

    def check(self, role: str, page: str, route: str, s: Submission) -> None:
        what = f"form on {page}: {s.describe()}"
        at = (s.method, s.url)
        if s.method == "get":
            response = self.request(role, "get", s.url)
        elif s.multipart:
            data: dict[str, list[str]] = {}
            for name, value in s.fields:
                data.setdefault(name, []).append(value)
            files = [(name, ("", b"", "application/octet-stream")) for name in s.files]
            response = self.request(role, "post", s.url, data=data, files=files or None)
        else:
            response = self.request(
                role,
                "post",
                s.url,
                content=urlencode(s.fields),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        if response is None:
            return
        must_mark = REFUSED_WITH_DEFAULTS.get(route)
        if must_mark is not None:
            shown = marked(response.text)
            if not (400 <= response.status_code < 500 and must_mark in shown):
                self.fail(
                    role, what, f"with its defaults it must be refused with {must_mark!r} "
                    f"marked; got {response.status_code}, marked {shown}", at=at,
                )  # fmt: skip
            return
        if 400 <= response.status_code < 500 and s.method == "post":
            shown = marked(response.text)
            if not shown:
                said = f"{response.status_code} with no field marked: {_gist(response)}"
                self.fail(role, what, said, at=at)
            return
        self.landing(role, what, response, at)


def _gist(response: Any) -> str:
    """What a refusal said: its alert, else its title, else the start of the body."""
    text = response.text
    found = (
        re.search(r'<div[^>]*role="alert"[^>]*>(.*?)</div>', text, re.S)
        or re.search(r'role="alert"[^>]*>(.*?)</p>', text, re.S)
        or re.search(r"<title>(.*?)</title>", text, re.S)
    )
    said = re.sub(r"<[^>]+>", " ", found.group(1) if found else text[:300])
    return " ".join(said.split())[:300]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def walk_users(demo_engine: Engine) -> dict[str, int]:
    """Users for the admin pages, so resetting a password or changing a role never
    touches the walkers: one active, one disabled (its page offers Re-enable)."""
    active = add_user(engine=demo_engine, username="walk-active", role="clinician",
                      password="walk password 1")  # fmt: skip
    disabled = add_user(engine=demo_engine, username="walk-disabled", role="surgeon",
                        password="walk password 2")  # fmt: skip
    deactivate(engine=demo_engine, username="walk-disabled")
    user = _table("user_account")
    with demo_engine.connect() as conn:
        admin = conn.execute(sa.select(user.c.id).where(user.c.username == "admin")).scalar_one()
    return {"active": active.id, "disabled": disabled.id, "admin": admin}


@pytest.fixture
def bedside(demo_engine: Engine) -> None:
    """An examination and a range-of-motion measurement of H-READY (the demo has none),
    so their correction and void forms are walked like every other kind's."""
    from tracker.services.records import add_exam, add_range_of_motion

    joint = {"engine": demo_engine, "actor": "clinician", "mrn": "H-READY", "site": "hip",
             "side": "left", "date": "2026-10-20", "today": TODAY}  # fmt: skip
    add_exam(**joint, swelling="yes", pain="4")
    add_range_of_motion(**joint, measurements=[{"movement": "flexion", "degrees": "95"}])


@pytest.fixture
def walkers(
    demo_engine: Engine, walk_users: dict[str, int], bedside: None
) -> Iterator[dict[str, TestClient]]:
    """A client per role, signed in, and one signed out; the demo planned as of TODAY."""
    plan_reminders(demo_engine, TODAY)
    with ExitStack() as stack:
        clients = {}
        for role in (*ROLES, ANONYMOUS):
            client = stack.enter_context(make_client_on(demo_engine, TODAY))
            clients[role] = sign_in(client, role) if role != ANONYMOUS else client
        yield clients


def demo_values(engine: Engine, users: dict[str, int]) -> DemoValues:
    return DemoValues(engine, users["active"], users["disabled"], users["admin"])


# --- the tests -------------------------------------------------------------------------------


def test_every_page_and_form_route_accepts_its_own_defaults_for_every_role(
    demo_engine: Engine, walk_users: dict[str, int], walkers: dict[str, TestClient]
) -> None:
    app = walkers[ROLES[0]].app
    assert isinstance(app, FastAPI)
    values = demo_values(demo_engine, walk_users)
    pages = [r.path for r in routes_of(app, "GET") if not is_json_route(r.path)]
    assert "/worklist" in pages and "/patients/{mrn}" in pages  # the walk reads real routes
    walk = Walk(app, walkers)
    for role in walkers:
        for path in pages:
            for url in values.fill(path):
                walk.open(role, url, listed=True)

    for path in pages:
        if not walk.seen_by.get(path):
            walk.fail("every role", path, "no role may open it (403 or sign-in for all)",
                      at=("get", path))  # fmt: skip
    forms_routes = [r.path for r in routes_of(app, "POST") if not is_json_route(r.path)]
    for path in forms_routes:
        if path not in walk.posted:
            walk.fail(
                "every role", f"POST {path}",
                "no form on any walked page submits to it (a form the walk cannot reach, "
                "or a route no page offers)", at=("post", path),
            )  # fmt: skip
    if walk.failures:
        pytest.fail("routes refusing ordinary input:\n" + walk.report(), pytrace=False)


def test_void_form_with_its_defaults_is_refused_asking_for_a_reason_and_voids_nothing(
    demo_engine: Engine, walk_users: dict[str, int], walkers: dict[str, TestClient]
) -> None:
    clinician = walkers["clinician"]
    records = demo_values(demo_engine, walk_users).records()
    # every correctable kind, the bedside examination and range of motion among them
    assert {r["slug"] for r in records} >= {"labs", "examination", "range-of-motion"}
    for record in records:
        page = f"/patients/{record['mrn']}/{record['slug']}/{record['record_id']}/edit"
        opened = clinician.get(page)
        assert opened.status_code == 200, opened.text
        void = [f for f in forms_in(opened.text, page) if (f.action or "").endswith("/void")]
        assert len(void) == 1, f"the {record['slug']} correction form offers no void form"
        (submission,) = void[0].submissions()
        response = clinician.post(
            submission.url,
            content=urlencode(submission.fields),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 422, (record, response.status_code)
        assert "reason" in marked(response.text), record
        table = _table(FORMS[record["slug"]].entity)
        with demo_engine.connect() as conn:
            voided = conn.execute(
                sa.select(table.c.voided_at).where(table.c.id == record["record_id"])
            ).scalar_one()
        assert voided is None, record


def test_every_api_and_fhir_read_answers_ordinary_input(
    demo_engine: Engine, walk_users: dict[str, int], walkers: dict[str, TestClient]
) -> None:
    app = walkers["clinician"].app
    assert isinstance(app, FastAPI)
    values = demo_values(demo_engine, walk_users)
    reads = [r.path for r in routes_of(app, "GET") if is_json_route(r.path)]
    assert f"{API_PREFIX}/patients/{{mrn}}" in reads
    refused = []
    for role in ROLES:
        bearer = {"authorization": f"Bearer {api_token(demo_engine, role)}"}
        for path in reads:
            for url in values.fill(path):
                response = walkers[ANONYMOUS].get(url, headers=bearer)
                if not response.is_success:
                    refused.append(
                        f"[{role}] GET {url}: {response.status_code} {response.text[:200]}"
                    )
    assert not refused, "\n".join(refused)
