"""Staff list screens stay cheap at scale (issue 5): constant query counts for 10 vs 100 rows on
every list, the bounded paginator (deferred joins, depth limit), the count line without
COUNT(*), the indexed search, the bucket filter and column (issue 3), and the high-value page
reading the nightly metrics.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm import selectors
from crm import tables as crm_tables
from crm.models import Customer, CustomerMetrics, CustomerStatus, FollowUp, MetricsRefresh
from crm.querysets import CustomerSearchText
from crm.tests.factories import CustomerFactory, FollowUpFactory, SupportUserFactory
from segments.models import Bucket, CurrentMembership
from surveys.tests.survey_helpers import make_campaign, make_survey

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 6, 30)


def _metrics(customer, i, **kw):
    fields = {
        "value_decile": 1 + i % 10,
        "contribution_lifetime": Decimal(1000 - i),
        "margin_lifetime": Decimal(1000 - i),
        "contribution_window": Decimal(-i - 1),
        "margin_window": Decimal(1),
        "cost_to_serve_window": Decimal(i + 2),
        "buyer_type": "regular",
        "preferred_channel": "online",
        "status": customer.status,
        "last_order_at": timezone.now() - dt.timedelta(days=200),
    }
    return CustomerMetrics(customer=customer, **{**fields, **kw})


def _customers(n, *, owner=None, bucket=None, **kw):
    """n customers, each with a metrics row; every other one in `bucket`, owners rotating."""
    owners = [owner] if owner else SupportUserFactory.create_batch(3)
    made = [CustomerFactory(owner=owners[i % len(owners)], **kw) for i in range(n)]
    CustomerMetrics.objects.bulk_create([_metrics(c, i) for i, c in enumerate(made)])
    CurrentMembership.objects.bulk_create(
        [
            CurrentMembership(customer=c, bucket=bucket if i % 2 else None, since=TODAY)
            for i, c in enumerate(made)
        ]
    )
    return made


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    assert response.status_code == 200, url
    return len(ctx)


@pytest.fixture
def bucket():
    return Bucket.objects.create(name="Whales", priority=1, colour="#112233")


def _assert_constant(client, url, grow, django_assert_max_num_queries, ceiling):
    """Queries for a page of 10 rows == for 100 rows (at most `ceiling`)."""
    grow(10)
    small = _count_queries(client, url)
    grow(90)
    with django_assert_max_num_queries(small):
        response = client.get(url)
    assert response.status_code == 200
    assert small <= ceiling, f"{url}: {small} queries"


# --- constant query counts on every list -----------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        "per_page=200",
        "per_page=200&status=active&effort_min=1&effort_max=10",
        "per_page=200&decile=1",
        "per_page=200&q=example",
        "per_page=200&sort=-name",
        "per_page=200&bucket={bucket}",
        "per_page=200&bucket=none",
        "per_page=200&owner={owner}",
        "export=csv",
    ],
)
def test_customer_list_variants_constant_in_queries(
    client_manager, support_user, bucket, params, django_assert_max_num_queries
):
    url = "/customers/?" + params.format(bucket=bucket.pk, owner=support_user.pk)
    _assert_constant(
        client_manager,
        url,
        lambda n: _customers(n, owner=support_user, bucket=bucket, service_effort=5),
        django_assert_max_num_queries,
        ceiling=12,
    )


def test_customer_list_deep_page_constant_in_queries(
    client_manager, bucket, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(crm_tables, "DEFERRED_JOIN_FROM", 0)
    _assert_constant(
        client_manager,
        "/customers/?per_page=5&page=2",
        lambda n: _customers(n, bucket=bucket),
        django_assert_max_num_queries,
        ceiling=12,
    )


@pytest.mark.parametrize("nightly", [False, True])
def test_high_value_constant_in_queries(client_manager, nightly, django_assert_max_num_queries):
    def grow(n):
        made = CustomerFactory.create_batch(n * 10, owner=SupportUserFactory())
        if nightly:
            CustomerMetrics.objects.bulk_create([_metrics(c, i) for i, c in enumerate(made)])

    _assert_constant(
        client_manager,
        "/accounts/high-value/?per_page=200",
        grow,
        django_assert_max_num_queries,
        ceiling=12,
    )


def test_my_work_constant_in_queries(client_support, support_user, django_assert_max_num_queries):
    def grow(n):
        for c in _customers(n, owner=support_user):
            FollowUpFactory(customer=c, assigned_to=support_user, due_on=TODAY)

    _assert_constant(client_support, "/my/", grow, django_assert_max_num_queries, ceiling=14)
    assert FollowUp.objects.filter(assigned_to=support_user).count() == 100


def test_bucket_members_constant_in_queries(client_manager, bucket, django_assert_max_num_queries):
    _assert_constant(
        client_manager,
        f"/segments/{bucket.pk}/",
        lambda n: _customers(n * 2, bucket=bucket),
        django_assert_max_num_queries,
        ceiling=16,
    )


def test_negative_contribution_constant_in_queries(
    client_manager, bucket, django_assert_max_num_queries
):
    _assert_constant(
        client_manager,
        "/segments/negative/",
        lambda n: _customers(n, bucket=bucket),
        django_assert_max_num_queries,
        ceiling=12,
    )


def test_churn_queue_constant_in_queries(client_support, bucket, django_assert_max_num_queries):
    _assert_constant(
        client_support,
        "/churn/queue/",
        lambda n: _customers(n, bucket=bucket, status=CustomerStatus.CHURNED),
        django_assert_max_num_queries,
        ceiling=14,
    )


def test_survey_list_constant_in_queries(client_manager, django_assert_max_num_queries):
    def grow(n):
        for i in range(n):
            make_campaign(make_survey(title=f"S{Customer.objects.count()}-{i}"))

    _assert_constant(client_manager, "/surveys/", grow, django_assert_max_num_queries, ceiling=10)


# --- paging without COUNT(*) -----------------------------------------------------------------


def _page_ids(response):
    return [row.record.pk for row in response.context["table"].paginated_rows]


@pytest.mark.parametrize("sort", ["id", "-name", "-service_effort", "city"])
def test_deferred_join_pages_equal_plain_pages(client_support, monkeypatch, sort):
    for i in range(23):
        CustomerFactory(last_name=f"N{i % 7}", service_effort=1 + i % 10, city=f"C{i % 4}")
    params = {"per_page": 5, "sort": sort}
    plain = [_page_ids(client_support.get("/customers/", {**params, "page": p})) for p in (2, 5)]
    monkeypatch.setattr(crm_tables, "DEFERRED_JOIN_FROM", 0)
    deferred = [_page_ids(client_support.get("/customers/", {**params, "page": p})) for p in (2, 5)]
    assert deferred == plain
    assert len(plain[0]) == 5 and len(plain[1]) == 3
    last = client_support.get("/customers/", {**params, "page": 5})
    assert not last.context["table"].page.has_next()
    assert last.context["table"].page.has_previous()


def test_too_deep_page_shows_the_deepest_allowed_and_says_so(client_support, monkeypatch):
    monkeypatch.setattr(crm_tables.BoundedLazyPaginator, "max_offset", 10)
    CustomerFactory.create_batch(30)
    response = client_support.get("/customers/", {"per_page": 5, "page": 9})
    assert response.status_code == 200
    page = response.context["table"].page
    assert page.number == 3  # offset 10 is the limit: pages 1..3
    assert not page.has_next()
    assert "Pages beyond 3 are not shown" in response.content.decode()


def test_count_line_exact_bounded_and_estimated(client_support, monkeypatch):
    CustomerFactory.create_batch(7, city="Busan")
    CustomerFactory.create_batch(3)
    body = client_support.get("/customers/", {"city": "busan"}).content.decode()
    assert "7 customers match." in body
    monkeypatch.setattr(selectors, "COUNT_LIMIT", 5)
    response = client_support.get("/customers/", {"city": "busan"})
    assert response.context["list_count"] == selectors.ListCount("more", 5)
    assert "More than 5 customers match" in response.content.decode()
    # Unfiltered on a large table: the planner's estimate, not a count.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_customer")
    count = selectors.list_count(qs=Customer.objects.all(), filtered=False, limit=5)
    assert count.kind == "estimate" and count.value == 10
    unfiltered = client_support.get("/customers/")
    assert "About 10 customers" in unfiltered.content.decode()
    assert "not counted" in unfiltered.content.decode()


def test_count_line_never_counts_the_whole_table(client_support):
    CustomerFactory.create_batch(3)
    with CaptureQueriesContext(connection) as ctx:
        client_support.get("/customers/", {"status": "active"})
    assert not [q for q in ctx if "COUNT(" in q["sql"].upper()]
    bounded = [q["sql"] for q in ctx if "LIMIT 1001" in q["sql"]]
    assert len(bounded) == 1 and "ORDER BY" not in bounded[0]


def test_few_matches_are_paged_by_their_ids(client_support):
    """A rare search match must not make PostgreSQL walk the primary key: with at most
    COUNT_LIMIT matches, the page query filters on their ids."""
    rare = CustomerFactory(first_name="Quetzalcoatl")
    CustomerFactory.create_batch(3)
    with CaptureQueriesContext(connection) as ctx:
        response = client_support.get("/customers/", {"q": "quetzal"})
    assert _page_ids(response) == [rare.pk]
    page_sql = [q["sql"] for q in ctx if "LIMIT 51" in q["sql"]]
    assert len(page_sql) == 1 and f"IN ({rare.pk})" in page_sql[0]


# --- search -----------------------------------------------------------------------------------


def test_search_uses_the_trigram_expression_index():
    """The query's expression is the index's: PostgreSQL can use crm_customer_search_trgm."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'crm_customer_search_trgm'"
        )
        (indexdef,) = cursor.fetchone()
    assert "gin_trgm_ops" in indexdef
    CustomerFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = Customer.objects.search("someone").order_by().explain()
    assert "crm_customer_search_trgm" in plan


@pytest.mark.parametrize(
    ("q", "matches"),
    [("50%", ["a"]), ("a_b", ["b"]), ("back\\slash", ["c"]), ("ANN", ["a", "b"])],
)
def test_search_escapes_wildcards_and_ignores_case(client_support, q, matches):
    made = {
        "a": CustomerFactory(first_name="Ann", last_name="50%off"),
        "b": CustomerFactory(first_name="Anna", last_name="a_b"),
        "c": CustomerFactory(first_name="Cy", last_name="back\\slash"),
    }
    CustomerFactory(first_name="Zed", last_name="a-b 500")
    response = client_support.get("/customers/", {"q": q})
    assert set(_page_ids(response)) == {made[k].pk for k in matches}


def test_search_too_short_is_a_form_error(client_support):
    CustomerFactory(first_name="Al")
    response = client_support.get("/customers/", {"q": "Al"})
    assert response.status_code == 200
    assert "q" in response.context["filter"].errors
    assert "at least 3 characters" in response.content.decode()
    assert _page_ids(response) == []


def test_search_expression_matches_every_column():
    c = CustomerFactory(first_name="Ann", last_name="Lee", email="a@x.org", phone="010")
    text = Customer.objects.annotate(t=CustomerSearchText()).get(pk=c.pk).t
    assert text == "Ann Lee a@x.org 010"


# --- bucket filter and column (issue 3) --------------------------------------------------------


def test_bucket_filter_column_and_unsegmented(client_support, bucket):
    other = Bucket.objects.create(name="Minnows", priority=2, colour="#445566")
    whale = CustomerFactory(first_name="Whale")
    minnow = CustomerFactory(first_name="Minnow")
    placed_nowhere = CustomerFactory(first_name="Nowhere")  # membership row, no bucket
    never_placed = CustomerFactory(first_name="Never")  # the job has not run for it yet
    CurrentMembership.objects.create(customer=whale, bucket=bucket, since=TODAY)
    CurrentMembership.objects.create(customer=minnow, bucket=other, since=TODAY)
    CurrentMembership.objects.create(customer=placed_nowhere, bucket=None, since=TODAY)
    cases = [
        (bucket.pk, {whale.pk}),
        (other.pk, {minnow.pk}),
        ("none", {placed_nowhere.pk, never_placed.pk}),
        ("", {whale.pk, minnow.pk, placed_nowhere.pk, never_placed.pk}),
    ]
    for value, expected in cases:
        response = client_support.get("/customers/", {"bucket": value})
        assert set(_page_ids(response)) == expected, value
    body = client_support.get("/customers/").content.decode()
    assert "Whales" in body and "Minnows" in body and "Unsegmented" in body
    assert "#112233" in body  # the bucket's colour in its badge


@pytest.mark.parametrize("value", ["999999", "abc", "-1"])
def test_bucket_filter_refuses_unknown_values(client_support, bucket, value):
    CustomerFactory()
    response = client_support.get("/customers/", {"bucket": value})
    assert response.status_code == 200
    assert "bucket" in response.context["filter"].errors
    assert _page_ids(response) == []


def test_inactive_bucket_is_not_offered(client_support, bucket):
    Bucket.objects.create(name="Retired", priority=5, active=False)
    body = client_support.get("/customers/").content.decode()
    assert "Whales" in body and "Retired" not in body


def test_csv_export_has_the_bucket(client_support, bucket):
    c = CustomerFactory(first_name="Whale")
    CurrentMembership.objects.create(customer=c, bucket=bucket, since=TODAY)
    response = client_support.get("/customers/", {"export": "csv", "bucket": bucket.pk})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].endswith(",bucket")
    assert len(lines) == 2 and lines[1].endswith(",Whales")


# --- high-value accounts from the nightly metrics ----------------------------------------------


def test_high_value_reads_nightly_metrics_when_present(client_manager):
    customers = CustomerFactory.create_batch(20)
    # The nightly decile wins over live figures (which are all zero here).
    CustomerMetrics.objects.bulk_create(
        [
            _metrics(c, i, margin_lifetime=Decimal(100 + i), cost_to_serve_lifetime=Decimal(i))
            for i, c in enumerate(customers)
        ]
    )
    assert selectors.high_value_source() == (selectors.HIGH_VALUE_LIVE, None)  # no refresh yet
    MetricsRefresh.objects.create(as_of=TODAY - dt.timedelta(days=2), full=True)
    MetricsRefresh.objects.create(as_of=TODAY - dt.timedelta(days=1))
    assert selectors.high_value_source() == (
        selectors.HIGH_VALUE_NIGHTLY,
        TODAY - dt.timedelta(days=1),  # the newest refresh's date
    )
    top = list(selectors.high_value_accounts())
    assert [c.pk for c in top] == [customers[0].pk, customers[10].pk]  # value_decile 1
    assert top[0].contribution_total == Decimal(1000)
    assert top[1].cost_to_serve_total == Decimal(10)
    response = client_manager.get("/accounts/high-value/")
    assert "nightly" in response.content.decode()
    assert {r.record.pk for r in response.context["table"].paginated_rows} == {
        customers[0].pk,
        customers[10].pk,
    }


def test_high_value_is_live_before_any_nightly_run(client_manager):
    CustomerFactory.create_batch(3)
    assert selectors.high_value_source() == (selectors.HIGH_VALUE_LIVE, None)
    response = client_manager.get("/accounts/high-value/")
    assert "computed live" in response.content.decode()


# --- permissions of the list (the screen's matrix lives in test_permissions) -------------------


def test_customer_list_matrix_with_bucket_filter(client, support_user, manager, bucket):
    url = f"/customers/?bucket={bucket.pk}"
    assert client.get(url).url.startswith("/login/")
    client.force_login(support_user)
    assert client.get(url).status_code == 200
    client.force_login(manager)
    assert client.get(url).status_code == 200
