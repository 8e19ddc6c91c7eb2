"""A sweep over every URL of the project: the permission matrix, then garbage in, never a 500.

The URL list comes from the resolver, so a new URL is swept (or this module fails, asking for
its path parameters) without anyone editing a list. Expectations are derived from each view's
`permission_required` and the role's permissions, so they stay true as roles change.

One data set serves the whole module: it is built once inside an outer transaction that is
rolled back at the end; every test runs in a savepoint inside it (pytest-django's `db`).
"""

import datetime as dt
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from crm.models import CustomerStatus
from crm.permissions import StaffPermissionMixin
from crm.tests.factories import (
    CustomerFactory,
    FollowUpFactory,
    InteractionFactory,
    ManagerFactory,
    OrderFactory,
    SocialProfileFactory,
    SupportUserFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# "\x00" is what "%00" in a query string decodes to; both are sent.
GARBAGE = ["'; DROP", "%00", "\x00", "9" * 30, "-1", "1.5", "2026-13-45"]
# One field at a time, the values that can get past that kind of field (fewer requests).
NASTY = "'; DROP\x00"
BY_KIND = {
    "text": [NASTY, "9" * 30],
    "number": [NASTY, "9" * 30, "-1"],
    "date": [NASTY, "9" * 30, "2026-13-45"],
    "other": [NASTY, "9" * 30, "-1"],  # hidden, select, checkbox, radio: ids, choices
}
PAGE_GARBAGE = [{"page": "-1"}, {"page": "abc"}, {"page": "999999999"}, {"sort": "nonexistent"}]
HUGE = "x" * 100_000
TEXT_TYPES = {"text", "search", "email", "url", "tel", "password", "textarea", ""}
DATE_TYPES = {"date", "datetime-local", "time", "month"}


def values_for(kind: str | None) -> list[str]:
    if kind is None:  # a query parameter seen only in links: anything goes
        return GARBAGE
    if kind in TEXT_TYPES:
        return BY_KIND["text"]
    if kind in DATE_TYPES:
        return BY_KIND["date"]
    return BY_KIND["number" if kind == "number" else "other"]


# --- the URL list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name"
    route: str  # the pattern text, e.g. "customers/<int:pk>/"
    callback: object

    @property
    def view_class(self):
        return getattr(self.callback, "view_class", None)

    @property
    def is_staff(self) -> bool:
        return self.view_class is not None and issubclass(self.view_class, StaffPermissionMixin)

    def allows(self, method: str) -> bool:
        view_class = self.view_class
        if view_class is None:  # function views: see FUNCTION_METHODS
            return method in FUNCTION_METHODS[self.name]
        return method in view_class.http_method_names and hasattr(view_class, method)

    def __str__(self) -> str:
        return self.name


# Function views (no view_class): the methods each accepts.
FUNCTION_METHODS = {
    "admin:index": {"get"},
    "set_language": {"get", "post"},
    "surveys:public_answer": {"get", "post"},
    "surveys:public_open": {"get"},
}


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace or namespace
            yield from _walk(pattern, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield Route(
                name=name or "", route=prefix + str(pattern.pattern), callback=pattern.callback
            )


def all_routes() -> list[Route]:
    routes = []
    for route in _walk(get_resolver()):
        if route.route.startswith("admin/"):
            if route.name == "admin:index":
                routes.append(route)
            continue
        if "static" in route.route or not route.name:
            continue
        routes.append(route)
    return routes


ROUTES = all_routes()
STAFF_ROUTES = [r for r in ROUTES if r.is_staff]
PUBLIC_SURVEY = ["surveys:public_open", "surveys:public_answer"]


# --- the data set ---------------------------------------------------------------------------


@dataclass
class World:
    support: object
    manager: object
    no_role: object
    customer: object
    profile: object
    follow_up: object
    bucket: object
    survey: object
    question: object
    campaign: object
    token: str
    reason: object
    churned: object
    churned_waiting: object
    interview: object


def _build_world() -> World:
    from segments.jobs import roi_recalculate
    from segments.tests.factories import BucketFactory
    from surveys import churn_services, services
    from surveys.answers import answers_parse
    from surveys.selectors import survey_questions
    from surveys.tests.churn_helpers import reason as reason_code
    from surveys.tests.survey_helpers import full_answers, make_invitation, make_survey

    support = SupportUserFactory(username="sweep-support")
    manager = ManagerFactory(username="sweep-manager")
    customer = CustomerFactory(owner=support, service_effort=8)
    OrderFactory.create_batch(2, customer=customer)
    InteractionFactory(customer=customer, staff=support)
    profile = SocialProfileFactory(customer=customer, followers=3000)
    follow_up = FollowUpFactory(customer=customer, assigned_to=manager)
    FollowUpFactory(customer=customer, assigned_to=support)
    FollowUpFactory(customer=customer)  # the unassigned queue
    bucket = BucketFactory(name="Sweep bucket")

    survey = make_survey(title="Sweep survey")
    question = survey.questions.order_by("order").first()
    campaign = services.campaign_create(
        survey=survey,
        name="Sweep campaign",
        audience_kind="customer",
        audience_customer=customer,
        created_by=manager,
    )
    services.campaign_send(campaign=campaign)
    mail.outbox = []
    services.invitations_send(
        invitation_ids=list(campaign.invitations.values_list("id", flat=True))
    )
    token = re.search(r"/s/([^/\s]+)/", mail.outbox[-1].body).group(1)
    mail.outbox = []
    # A second, finished response so that results and verbatims have something to show.
    answered, _ = make_invitation(campaign)
    questions = survey_questions(survey)
    raw = {
        k: v if isinstance(v, list) else [v]
        for k, v in full_answers(survey, nps="3").items()
        if k != "action"
    }
    parsed = answers_parse(questions, raw, require_all=True)
    services.response_submit(
        invitation=answered, questions=questions, values=parsed.values, language="en"
    )

    price = reason_code()
    churned = CustomerFactory(status=CustomerStatus.CHURNED)
    OrderFactory(customer=churned, placed_at=timezone.now() - dt.timedelta(days=300))
    interview = churn_services.churn_interview_record(
        customer=churned,
        interviewer=support,
        recorded_by=support,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=price,
        verbatim="Too expensive",
    )
    churned_waiting = CustomerFactory(status=CustomerStatus.CHURNED)
    roi_recalculate(as_of=timezone.localdate(), full=True)
    return World(
        support=support,
        manager=manager,
        no_role=UserFactory(username="sweep-no-role"),
        customer=customer,
        profile=profile,
        follow_up=follow_up,
        bucket=bucket,
        survey=survey,
        question=question,
        campaign=campaign,
        token=token,
        reason=price,
        churned=churned,
        churned_waiting=churned_waiting,
        interview=interview,
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _no_jobs_on_the_shared_broker(monkeypatch):
    """The "Recalculate now" button publishes straight to the broker: keep the sweep's dozens
    of posts off the Redis queue that the suite's real-worker tests consume."""
    from segments.tasks import roi_recalculate_task

    queued = []
    monkeypatch.setattr(roi_recalculate_task, "delay", lambda **kw: queued.append(kw))
    return queued


# Path parameters: (route prefix, parameter) -> the World attribute holding the object.
PARAMS = [
    ("customers/", "pk", "customer"),
    ("customers/", "profile_id", "profile"),
    ("my/follow-ups/", "pk", "follow_up"),
    ("segments/", "pk", "bucket"),
    ("surveys/campaigns/", "pk", "campaign"),
    ("surveys/", "pk", "survey"),
    ("surveys/", "question_pk", "question"),
    ("churn/interview/", "customer_id", "churned_waiting"),
    ("churn/interviews/", "pk", "interview"),
    ("churn/reasons/", "pk", "reason"),
    ("s/", "token", "token"),
]


def url_for(route: Route, world: World) -> str:
    kwargs = {}
    for param in re.findall(r"<(?:\w+:)?(\w+)>", route.route):
        attr = next(
            (a for prefix, p, a in PARAMS if p == param and route.route.startswith(prefix)), None
        )
        assert attr, f"{route}: no object for <{param}>; add it to PARAMS in this module"
        value = getattr(world, attr)
        kwargs[param] = value if isinstance(value, str) else value.pk
    return reverse(route.name, kwargs=kwargs)


def expected_perms(route: Route, world: World) -> tuple[str, ...]:
    view = route.view_class()
    view.kwargs = resolve(url_for(route, world)).kwargs
    view.args = ()
    return view.get_permission_required()


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def consume(response):
    """Streamed responses fail while streaming: read them to the end."""
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return response


# --- HTML forms -----------------------------------------------------------------------------


@dataclass
class Field:
    name: str
    kind: str  # input type, "select" or "textarea"
    value: str
    checked: bool = True


class FormParser(HTMLParser):
    """Forms of a page: method, action and fields (name, type, rendered value)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[str] = []
        self._select: Field | None = None
        self._textarea: Field | None = None

    def _fields(self) -> list[Field]:
        if not self.forms:
            self.forms.append({"method": "get", "action": "", "fields": []})
        return self.forms[-1]["fields"]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form":
            self.forms.append(
                {
                    "method": (a.get("method") or "get").lower(),
                    "action": a.get("action") or "",
                    "hx_post": a.get("hx-post") or "",
                    "fields": [],
                }
            )
        elif tag in ("input", "button") and a.get("name"):
            kind = (a.get("type") or ("submit" if tag == "button" else "text")).lower()
            checked = "checked" in a if kind in ("checkbox", "radio") else True
            self._fields().append(Field(a["name"], kind, a.get("value") or "", checked))
        elif tag == "select" and a.get("name"):
            self._select = Field(a["name"], "select", "", True)
            self._fields().append(self._select)
        elif tag == "option" and self._select is not None:
            if not self._select.value or "selected" in a:
                self._select.value = a.get("value", "")
        elif tag == "textarea" and a.get("name"):
            self._textarea = Field(a["name"], "textarea", "")
            self._fields().append(self._textarea)

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea.value += data


def parse_page(response) -> FormParser:
    parser = FormParser()
    if "html" in response.get("Content-Type", "") and not getattr(response, "streaming", False):
        parser.feed(response.content.decode("utf-8", "replace"))
    return parser


def form_data(fields: list[Field]) -> dict[str, list[str]]:
    """What a browser would submit for the form as rendered (one submit button at most)."""
    data: dict[str, list[str]] = {}
    for field in fields:
        if field.kind in ("submit", "image", "reset", "file") or not field.checked:
            continue
        data.setdefault(field.name, []).append(field.value)
    return data


FILL = {"number": "5", "email": "sweep@example.com", "url": "https://example.com/"}


def filled_data(fields: list[Field]) -> dict[str, list[str]]:
    """The rendered form with its blanks filled in plausibly, so that garbage in one field at a
    time gets past the others to the service and the database."""
    data = form_data(fields)
    for field in fields:
        if field.kind in ("radio", "checkbox") and field.name not in data:
            data[field.name] = [field.value]  # the first choice of an untouched group
        elif data.get(field.name) == [""] and field.kind != "hidden":
            if field.kind in DATE_TYPES:
                data[field.name] = [timezone.localdate().isoformat()]
            elif field.kind in TEXT_TYPES or field.kind in FILL:
                data[field.name] = [FILL.get(field.kind, "sweep")]
    return data


def _path_of(action: str, page_path: str) -> str:
    return urlsplit(action).path or page_path if action else page_path


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", STAFF_ROUTES, ids=str)
def test_staff_url_permission_matrix(world, route):
    url = url_for(route, world)
    anonymous = client_for().get(url)
    assert anonymous.status_code == 302, f"anonymous GET {url}"
    assert anonymous.url.startswith("/login/"), f"anonymous GET {url} -> {anonymous.url}"

    perms = expected_perms(route, world)
    ok = 200 if route.allows("get") else 405
    support_expected = ok if world.support.has_perms(perms) else 403
    support = consume(client_for(world.support).get(url))
    assert support.status_code == support_expected, f"support GET {url} needs {perms}"

    assert world.manager.has_perms(perms), f"managers lack {perms} for {url}"
    no_role = consume(client_for(world.no_role).get(url))
    assert no_role.status_code == (403 if perms else ok), f"user without a role GET {url}"
    manager = consume(client_for(world.manager).get(url))
    assert manager.status_code == ok, f"manager GET {url}"

    if route.allows("post"):
        anonymous_post = client_for().post(url)
        assert anonymous_post.status_code == 302 and anonymous_post.url.startswith("/login/")
        if support_expected == 403:
            assert client_for(world.support).post(url).status_code == 403, f"support POST {url}"


def test_every_url_is_swept():
    names = {r.name for r in ROUTES}
    # A few known names, so that a broken walk cannot pass silently.
    assert {"crm:customer_list", "segments:bucket_list", "surveys:survey_list"} <= names
    assert {"surveys:churn_queue", "surveys:public_answer", "admin:index", "login"} <= names
    unknown = [
        r.name
        for r in ROUTES
        if not r.is_staff and r.view_class is None and r.name not in FUNCTION_METHODS
    ]
    assert not unknown, f"function views without declared methods: {unknown}"


def test_public_and_auth_pages(world):
    anonymous = client_for()
    assert anonymous.get("/login/").status_code == 200
    home = anonymous.get("/")
    assert home.status_code == 302
    assert anonymous.get(home.url).url.startswith("/login/")
    admin_index = anonymous.get(reverse("admin:index"))
    assert admin_index.status_code == 302 and "/admin/login/" in admin_index.url
    assert anonymous.get(reverse("logout")).status_code == 405
    assert anonymous.get(reverse("set_language")).status_code in (204, 302)

    for user in (world.support, world.manager):  # staff, but not administrators
        client = client_for(user)
        assert client.get("/login/").status_code == 302
        assert client.get(reverse("admin:index")).status_code == 302

    opened = anonymous.get(f"/s/{world.token}/")
    assert opened.status_code == 302 and opened.url == "/s/answer/"
    page = anonymous.get("/s/answer/")
    assert page.status_code == 200
    assert world.question.text_en in page.content.decode()
    for response in (opened, page):
        assert "no-store" in response["Cache-Control"]
        assert response["Referrer-Policy"] in ("no-referrer", "same-origin", "strict-origin")
    # Unknown and malformed links: a clear page, never a 500, same headers.
    for bad in ("x" * 43, "not-a-token", "%00", "9" * 300):
        response = client_for().get(f"/s/{bad}/")
        assert response.status_code == 404, bad
        assert "no-store" in response["Cache-Control"]
        assert response["Referrer-Policy"] == "no-referrer"
    wrong_method = client_for().post(f"/s/{world.token}/")
    assert wrong_method.status_code == 405 and "no-store" in wrong_method["Cache-Control"]
    lost = client_for().get("/s/answer/")
    assert lost.status_code == 404 and "no-store" in lost["Cache-Control"]


# --- garbage in -----------------------------------------------------------------------------


def _fingerprint_sql() -> str:
    """One query hashing every row of every crm/segments/surveys table (tiny here)."""
    from django.apps import apps

    tables = sorted(
        model._meta.db_table
        for label in ("crm", "segments", "surveys")
        for model in apps.get_app_config(label).get_models()
    )
    # Table names come from the models, not from input.
    parts = " UNION ALL ".join(
        f"SELECT '{t}:' || md5(t::text) AS row FROM {t} t"  # noqa: S608
        for t in tables
    )
    return f"SELECT md5(coalesce(string_agg(row, ',' ORDER BY row), '')) FROM ({parts}) rows"  # noqa: S608


def data_fingerprint() -> str:
    with connection.cursor() as cursor:
        cursor.execute(_fingerprint_sql())
        return cursor.fetchone()[0]


def _failures(client, method, url, payloads, **headers) -> list[str]:
    """Every payload in turn; a failure is a 5xx, an exception, or a refused POST (4xx) that
    changed any row (refused input must leave nothing half-written)."""
    failures = []
    before = data_fingerprint() if method == "post" else None
    for payload in payloads:
        changed = False
        try:
            # Each request starts from the same data (a finished survey, a deleted profile
            # and the like are rolled back), so that every payload reaches the same code.
            with transaction.atomic():
                response = consume(getattr(client, method)(url, payload, headers=headers))
                status = response.status_code
                if before and 400 <= status < 500 and status != 429:
                    changed = data_fingerprint() != before
                transaction.set_rollback(True)
        except Exception as exc:  # noqa: BLE001 - report every failure with its input
            status = f"{type(exc).__name__}: {str(exc)[:200]}"
        if not isinstance(status, int) or status >= 500 or changed:
            shown = {
                k: (v if len(str(v)) < 60 else f"<{len(str(v))} chars>") for k, v in payload.items()
            }
            outcome = f"{status} but data changed" if changed else status
            failures.append(f"{method.upper()} {url} {shown} {headers or ''} -> {outcome}")
    return failures


GET_ROUTES = [r for r in ROUTES if r.allows("get") and r.name != "admin:index"]


@pytest.mark.parametrize("route", GET_ROUTES, ids=str)
def test_garbage_query_parameters_never_500(world, route):
    url = url_for(route, world)
    client = client_for(world.manager)
    page = client.get(url)
    consume(page)
    parsed = parse_page(page)
    kinds: dict[str, str | None] = {}
    for href in parsed.links:  # sort, paging and tab links of the same page
        parts = urlsplit(href)
        if not parts.path or parts.path == url:
            kinds.update(dict.fromkeys(k for k, _ in parse_qsl(parts.query)))
    filterset_class = getattr(route.view_class, "filterset_class", None)
    if filterset_class is not None:
        kinds.update(dict.fromkeys(filterset_class.base_filters))
    for form in parsed.forms:
        if form["method"] == "get":
            kinds.update({f.name: f.kind for f in form["fields"]})
    kinds.pop("csrfmiddlewaretoken", None)
    names = sorted(kinds)
    payloads = list(PAGE_GARBAGE)
    payloads += [{name: value} for name in names for value in values_for(kinds[name])]
    payloads += [{name: HUGE} for name in names if kinds[name] in TEXT_TYPES]
    payloads += [{**dict.fromkeys(names, value), "export": "csv"} for value in GARBAGE]
    failures = _failures(client, "get", url, payloads)
    # htmx requests may take another path (partials): the same all-garbage input through it.
    hx_payloads = [{}, {"page": "abc"}, *(dict.fromkeys(names, v) for v in (NASTY, "9" * 30))]
    failures += _failures(client, "get", url, hx_payloads, HX_Request="true")
    assert not failures, "\n".join(failures)


POST_ROUTES = [r for r in ROUTES if r.allows("post") and r.name not in ("logout",)]

# Pages whose forms post to URLs that have no page of their own.
HUB_PAGES = [
    "crm:customer_detail",
    "crm:my_work",
    "crm:high_value",
    "segments:roi_dashboard",
    "segments:bucket_edit",
    "surveys:survey_edit",
    "surveys:campaign_detail",
]


def hub_urls(world: World) -> list[str]:
    by_name = {r.name: r for r in ROUTES}
    pages = HUB_PAGES + [r.name for r in POST_ROUTES if r.allows("get") and r.is_staff]
    urls = [url_for(by_name[name], world) for name in dict.fromkeys(pages)]
    # The even-out proposal (and its apply form) shows once staff are chosen.
    staff = f"staff={world.support.pk}&staff={world.manager.pk}"
    return [*urls, f"{reverse('crm:even_out')}?{staff}"]


@pytest.fixture(scope="module")
def forms_by_path(world, django_db_blocker):
    """Every POST form on the staff pages (as a manager), by the path it posts to."""
    by_path: dict[str, list[list[Field]]] = {}
    with django_db_blocker.unblock(), transaction.atomic():
        client = client_for(world.manager)
        for url in hub_urls(world):
            path = urlsplit(url).path
            for form in parse_page(client.get(url)).forms:
                targets = {_path_of(form["action"], path)} if form["method"] == "post" else set()
                if form["hx_post"]:
                    targets.add(_path_of(form["hx_post"], path))
                for target in targets:
                    known = by_path.setdefault(target, [])
                    shape = [f.name for f in form["fields"]]
                    if all([f.name for f in other] != shape for other in known):
                        known.append(form["fields"])
        transaction.set_rollback(True)
    return by_path


@pytest.mark.parametrize("route", POST_ROUTES, ids=str)
def test_garbage_posts_never_500(world, forms_by_path, route):
    url = url_for(route, world)
    client = client_for(None if route.name in PUBLIC_SURVEY else world.manager)
    forms = list(forms_by_path.get(url, []))
    if route.name == "surveys:public_answer":
        client.get(f"/s/{world.token}/")
        forms = [f["fields"] for f in parse_page(client.get(url)).forms if f["method"] == "post"]
    payloads: list[dict] = [{}]
    refused: list[dict] = []  # certainly invalid: a NUL byte in every field
    for fields in forms:
        payloads.append(form_data(fields))
        base = filled_data(fields)
        payloads.append(base)
        kinds = {f.name: f.kind for f in fields if f.name != "csrfmiddlewaretoken"}
        for name, kind in kinds.items():
            payloads += [{**base, name: value} for value in values_for(kind)]
        payloads += [{**base, **dict.fromkeys(kinds, value)} for value in GARBAGE]
        typed = [n for n, k in kinds.items() if k not in ("submit", "checkbox", "hidden", "button")]
        if typed:
            refused.append({**base, **dict.fromkeys(typed, NASTY)})
        payloads += [{**base, name: HUGE} for name, kind in kinds.items() if kind in TEXT_TYPES]
    failures = _failures(client, "post", url, payloads)
    failures += _failures(client, "post", url, [{}, *refused], HX_Request="true")
    assert not failures, "\n".join(failures)
    if route.name not in POST_200_ALLOWED:
        for payload in refused:  # refused input says so with a 4xx, not a 200
            status = client.post(url, payload).status_code
            assert 400 <= status < 500, f"POST {url} with a NUL in every field -> {status}"


# POSTs that answer 200 by design: previews and the language switch.
POST_200_ALLOWED = {"segments:bucket_preview", "set_language"}


def test_post_routes_have_forms_to_fuzz(forms_by_path, world):
    """Every staff POST URL is reached by some form (else the fuzzing above is thin)."""
    missing = [r.name for r in POST_ROUTES if r.is_staff and url_for(r, world) not in forms_by_path]
    assert not missing, f"no form found posting to: {missing}"


ID_ROUTES = [r for r in ROUTES if re.search(r"<int:", r.route)]


@pytest.mark.parametrize("route", ID_ROUTES, ids=str)
def test_unknown_and_huge_ids_are_404(world, route):
    """An id that does not exist, or does not fit the column, is a 404 (never a 500)."""
    client = client_for(world.manager)
    method = "get" if route.allows("get") else "post"
    known = url_for(route, world)
    for bad in ("999999999", "9" * 25):
        url = re.sub(r"/\d+/", f"/{bad}/", known)
        response = getattr(client, method)(url)
        assert response.status_code == 404, f"{method.upper()} {url} -> {response.status_code}"


def test_error_pages_render_without_a_request_context():
    """Django renders 500.html with an empty context (and the others may meet odd requests)."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404
    from django.test import RequestFactory
    from django.views import defaults

    request = RequestFactory().get("/nowhere/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    pages = [
        (defaults.bad_request(request, Exception()), 400),
        (defaults.permission_denied(request, PermissionDenied()), 403),
        (defaults.page_not_found(request, Http404()), 404),
        (defaults.server_error(request), 500),
    ]
    for response, status in pages:
        assert response.status_code == status
        assert b"<h1>" in response.content, status


# Staff tables with a CSV export (managers see them all). Tables still without one are listed
# in the sweep's report: my work, high value, bucket list, ROI dashboard, cohorts, survey list,
# survey results, churn report, reason codes.
EXPORTS = [
    "crm:customer_list",
    "segments:bucket_detail",
    "segments:negative",
    "surveys:verbatims",
    "surveys:churn_queue",
    "surveys:churn_interview_list",
]


@pytest.mark.parametrize("name", EXPORTS)
def test_csv_exports(world, name):
    route = next(r for r in ROUTES if r.name == name)
    response = client_for(world.manager).get(url_for(route, world), {"export": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.count(b"\n") >= 1  # at least the header


def test_the_fingerprint_sees_any_write(world):
    """The "nothing half-written" check above is only as good as this."""
    before = data_fingerprint()
    assert data_fingerprint() == before
    with transaction.atomic():
        type(world.profile).objects.filter(pk=world.profile.pk).update(followers=1)
        assert data_fingerprint() != before
        transaction.set_rollback(True)
    assert data_fingerprint() == before
