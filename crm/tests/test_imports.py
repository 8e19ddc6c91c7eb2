"""CSV imports (crm.imports): validation messages, all-or-nothing, idempotency, both write paths.

Every test runs twice: through the PostgreSQL path (COPY + set-based SQL) and through the
portable Python path (the one SQLite uses), forced here on PostgreSQL.
"""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from crm import imports
from crm.models import Customer, Interaction, Order, OwnerChange, RatingChange
from crm.tests.factories import CustomerFactory, OrderFactory, SupportUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["postgres", "python"], autouse=True)
def write_path(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(imports, "_is_postgres", lambda: False)
    return request.param


def csv_file(text: str, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(text.encode(encoding))


def messages(report) -> list[str]:
    return [str(e) for e in report.errors]


# ---------------------------------------------------------------- orders


def test_orders_import_with_default_margin_rate(settings):
    settings.CRM_DEFAULT_MARGIN_RATE = Decimal("0.25")
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue,channel,category,brand,external_id\n"
            "C1,2026-01-05,100.00,store,shoes,Acme,O1\n"
            "C1,2026-02-01T10:30:00+09:00,80,,,,\n"
        )
    )
    assert report.ok, messages(report)
    assert (report.rows, report.created) == (2, 2)
    first = Order.objects.get(external_id="O1")
    assert (first.margin, first.cost_of_goods, first.channel) == (
        Decimal("25.00"),
        Decimal("75.00"),
        "store",
    )
    second = Order.objects.get(external_id="")
    assert second.channel == "online"
    assert second.placed_at == dt.datetime(2026, 2, 1, 1, 30, tzinfo=dt.UTC)


def test_orders_cost_or_margin_given():
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue,cost,margin,external_id\n"
            "C1,2026-01-05,100,60,,A\n"
            "C1,2026-01-05,100,,-10,B\n"
            "C1,2026-01-05,100,70,30,C\n"
        )
    )
    assert report.ok, messages(report)
    got = dict(Order.objects.values_list("external_id", "cost_of_goods"))
    assert got == {"A": Decimal("60.00"), "B": Decimal("110.00"), "C": Decimal("70.00")}


def test_orders_bad_rows_are_listed_by_line_and_column_and_nothing_is_written():
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue,cost,margin,channel,external_id\n"
            "C1,2026-01-05,100,,,online,OK1\n"
            "C1,yesterday,100,,,online,X2\n"
            "C1,2026-01-05,-5,,,online,X3\n"
            "C1,2026-01-05,100,,,fax,X4\n"
            "NOPE,2026-01-05,100,,,online,X5\n"
            "C1,2026-01-05,100,50,10,online,X6\n"
            "C1,2026-01-05,100,,,online,OK1\n"
            "C1,2026-01-05\n"
            ",2026-01-05,1.234,,,online,X9\n"
        )
    )
    assert not report.ok
    got = messages(report)
    assert "line 3, column placed_at: 'yesterday' is not an ISO date" in got[0]
    assert any(m.startswith("line 4, column revenue: must not be negative") for m in got)
    assert any(m.startswith("line 5, column channel: 'fax' is not one of") for m in got)
    assert "line 6, column customer_ref: unknown customer 'NOPE'" in got
    assert any(m.startswith("line 7, column margin:") for m in got)
    assert "line 8, column external_id: external_id repeats line 2" in got
    assert "line 9: expected 7 values, found 2" in got
    assert "line 10, column customer_ref: a value is required" in got
    assert "line 10, column revenue: at most 2 decimal places" in got
    assert report.error_count == 9
    assert Order.objects.count() == 0
    assert report.created == 0


def test_orders_reimport_changes_nothing_and_conflicting_reimport_is_an_error():
    CustomerFactory(external_id="C1")
    text = "customer_ref,placed_at,revenue,external_id\nC1,2026-01-05,100,O1\nC1,2026-01-06,5,O2\n"
    assert imports.orders_import(file=csv_file(text)).created == 2
    again = imports.orders_import(file=csv_file(text))
    assert again.ok and (again.created, again.unchanged) == (0, 2)
    changed = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue,external_id\nC1,2026-01-05,101,O1\nC1,2026-01-07,9,O3\n"
        )
    )
    assert messages(changed) == [
        "line 2, column external_id: 'O1' was already imported with different values"
    ]
    assert Order.objects.count() == 2


def test_orders_create_customers_option():
    report = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue\nNEW1,2026-01-05,10\nNEW1,2026-01-06,10\nNEW2,2026-01-07,1\n"
        ),
        create_customers=True,
    )
    assert report.ok, messages(report)
    assert (report.created, report.customers_created) == (3, 2)
    assert Customer.objects.get(external_id="NEW1").orders.count() == 2


def test_orders_import_command_with_progress(tmp_path, capsys):
    CustomerFactory(external_id="C1")
    path = tmp_path / "orders.csv"
    path.write_text("customer_ref,placed_at,revenue\nC1,2026-01-05,10\n")
    call_command("import_orders", str(path))
    assert Order.objects.count() == 1
    assert "1 row(s) read: 1 created" in capsys.readouterr().out


def test_import_command_failure_is_a_command_error(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("customer_ref,placed_at,revenue\nZZ,2026-01-05,10\n")
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_orders", str(path))
    with pytest.raises(CommandError, match="Cannot open"):
        call_command("import_orders", str(tmp_path / "missing.csv"))


# ---------------------------------------------------------------- file-level errors


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "The file is empty"),
        (b"\n\n", "The first line is empty"),
        (b"customer_ref,placed_at,revenue,revenue\n", "Column 'revenue' appears twice"),
        (b"customer_ref,placed_at,revenue,colour\n", "Unknown column(s) colour"),
        (b"customer_ref,revenue\n", "Required column(s) missing: placed_at"),
        ("customer_ref,placed_at,revenue\n".encode("utf-16"), "not UTF-8"),
        (b"customer_ref,placed_at,revenue\nC1,2026-01-01,\xff\xfe\n", "not UTF-8"),
        (b"customer_ref,placed_at,revenue\nC\x001,2026-01-01,1\n", "NUL character"),
        (b'customer_ref,placed_at,revenue\n"C1,2026-01-01,1\n', "unexpected end of data"),
    ],
)
def test_file_level_errors(content, expected):
    report = imports.orders_import(file=io.BytesIO(content))
    assert not report.ok
    assert expected in messages(report)[0]


def test_bom_is_accepted_and_header_is_case_insensitive():
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file("Customer_Ref, Placed_At ,REVENUE\nC1,2026-01-05,10\n", "utf-8-sig")
    )
    assert report.ok, messages(report)
    assert Order.objects.count() == 1


def test_error_listing_is_capped():
    rows = "".join(f"C{i},bad,1\n" for i in range(250))
    report = imports.orders_import(file=csv_file("customer_ref,placed_at,revenue\n" + rows))
    assert report.error_count == 250
    assert len(report.errors) == imports.MAX_ERRORS
    assert report.error_lines()[-1] == "and 50 more"


# ---------------------------------------------------------------- customers


CUSTOMERS = (
    "external_id,first_name,last_name,email,preferred_language,birth_year,gender,country,"
    "web_savviness,acquisition_date,acquisition_cost,service_effort,owner\n"
    "K1,Ann,Lee,ann@example.com,ko,1980,female,kr,3,2025-01-02,12.50,4,sup\n"
    "K2,Bo,,,,,,,,,,,\n"
)


def test_customers_import_creates_then_is_idempotent_then_updates():
    staff = SupportUserFactory(username="sup")
    report = imports.customers_import(file=csv_file(CUSTOMERS))
    assert report.ok, messages(report)
    assert (report.created, report.updated) == (2, 0)
    ann = Customer.objects.get(external_id="K1")
    assert (ann.owner, ann.country, ann.preferred_language, ann.service_effort) == (
        staff,
        "KR",
        "ko",
        4,
    )
    assert ann.effort_rated_at is not None
    assert ann.acquisition_cost == Decimal("12.50")

    again = imports.customers_import(file=csv_file(CUSTOMERS))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)

    manager = SupportUserFactory(username="boss")
    update = imports.customers_import(
        file=csv_file("external_id,first_name,service_effort,owner\nK1,Anne,7,\nK2,Bo,,\n"),
        user=manager,
    )
    assert (update.created, update.updated, update.unchanged) == (0, 1, 1)
    ann.refresh_from_db()
    assert (ann.first_name, ann.service_effort, ann.owner, ann.email) == (
        "Anne",
        7,
        None,
        "ann@example.com",  # absent column left alone
    )
    change = OwnerChange.objects.get(customer=ann)
    assert (change.from_owner, change.to_owner, change.changed_by) == (staff, None, manager)
    rating = RatingChange.objects.get(customer=ann)
    assert (rating.old_value, rating.new_value) == (4, 7)
    assert ann.effort_rated_by == manager

    # Another column changes: who rated the effort, and when, stay as they were.
    rated_at = ann.effort_rated_at
    imports.customers_import(file=csv_file("external_id,first_name,service_effort\nK1,Anna,7\n"))
    ann.refresh_from_db()
    assert (ann.first_name, ann.effort_rated_by, ann.effort_rated_at) == ("Anna", manager, rated_at)
    assert RatingChange.objects.filter(customer=ann).count() == 1


def test_customers_validation():
    report = imports.customers_import(
        file=csv_file(
            "external_id,first_name,email,birth_year,web_savviness,service_effort,country,owner\n"
            "A,,x@,1800,6,11,KOR,ghost\n"
            "B,Bea,,,,,,\n"
            "B,Bea,,,,,,\n"
        )
    )
    got = messages(report)
    assert "line 2, column first_name: a value is required" in got
    assert "line 2, column email: 'x@' is not a valid email address" in got
    assert "line 2, column birth_year: 1800 is outside 1900-2100" in got
    assert "line 2, column web_savviness: 6 is outside 1-5" in got
    assert "line 2, column service_effort: 11 is outside 1-10" in got
    assert any(m.startswith("line 2, column country:") for m in got)
    assert "line 4, column external_id: external_id repeats line 3" in got
    assert Customer.objects.count() == 0


def test_customers_unknown_owner_is_an_error():
    report = imports.customers_import(file=csv_file("external_id,first_name,owner\nA,Al,ghost\n"))
    assert messages(report) == ["line 2, column owner: unknown staff username 'ghost'"]
    assert Customer.objects.count() == 0


# ---------------------------------------------------------------- interactions


INTERACTIONS = (
    "customer_ref,staff,occurred_at,channel,direction,minutes,summary,outcome,follow_up_on,"
    "external_id\n"
    'C1,sup,2026-03-01 09:00,phone,outbound,15,"Called, about delivery",sale,2026-03-05,I1\n'
    "C1,sup,2026-03-02,email,,5,,,,\n"
)


def test_interactions_import_and_reimport():
    SupportUserFactory(username="sup")
    CustomerFactory(external_id="C1")
    report = imports.interactions_import(file=csv_file(INTERACTIONS))
    assert report.ok, messages(report)
    first = Interaction.objects.get(external_id="I1")
    assert (first.minutes, first.direction, first.outcome, first.summary) == (
        15,
        "outbound",
        "sale",
        "Called, about delivery",
    )
    assert first.follow_up_on == dt.date(2026, 3, 5)
    assert Interaction.objects.get(external_id="").direction == "inbound"
    header, first_row = INTERACTIONS.splitlines()[:2]
    again = imports.interactions_import(file=csv_file(f"{header}\n{first_row}\n"))
    assert (again.ok, again.created, again.unchanged) == (True, 0, 1)


def test_interactions_validation():
    SupportUserFactory(username="sup")
    CustomerFactory(external_id="C1")
    report = imports.interactions_import(
        file=csv_file(
            "customer_ref,staff,occurred_at,channel,minutes\n"
            "C1,ghost,2026-03-01,phone,10\n"
            "C1,sup,2026-03-01,phone,0\n"
            "C1,sup,2026-03-01,phone,1441\n"
            "C1,sup,2026-03-01,pigeon,10\n"
        )
    )
    got = messages(report)
    assert "line 2, column staff: unknown staff username 'ghost'" in got
    assert "line 3, column minutes: 0 is outside 1-1440" in got
    assert "line 4, column minutes: 1441 is outside 1-1440" in got
    assert any(m.startswith("line 5, column channel: 'pigeon' is not one of") for m in got)
    assert Interaction.objects.count() == 0


def test_existing_orders_untouched_when_import_fails():
    order = OrderFactory(customer__external_id="C1", external_id="KEEP")
    imports.orders_import(file=csv_file("customer_ref,placed_at,revenue\nC1,2026-01-05,x\n"))
    assert list(Order.objects.values_list("id", flat=True)) == [order.id]


# ---------------------------------------------------------------- cell parsers


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2))
def test_money_parser_accepts_every_valid_amount(amount):
    assert imports.p_money(str(amount)) == amount


@pytest.mark.parametrize("text", ["-1", "1.001", "NaN", "Infinity", "1e13", "abc", "1,50"])
def test_money_parser_rejects(text):
    with pytest.raises(ValueError):
        imports.p_money(text)


def test_naive_datetimes_are_in_the_current_time_zone(settings):
    from django.utils import timezone

    with timezone.override("Asia/Seoul"):
        imports._IMPORT_TZ.set(None)
        moment = imports.p_datetime("2026-01-05 09:00")
    assert moment == dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------- speed paths (issue 5)


@given(st.from_regex(imports._PLAIN_EMAIL, fullmatch=True).filter(lambda v: len(v) <= 254))
def test_email_fast_path_accepts_only_what_django_accepts(value):
    from django.core.validators import validate_email

    validate_email(value)  # raises if the fast path let through something Django refuses
    assert imports.p_email(value) == value


@pytest.mark.parametrize(
    "text",
    ["a..b@example.com", ".a@example.com", "a@-x.com", "a@x-.com", "a@example.c0m", "a b@x.com"],
)
def test_email_parser_rejects(text):
    with pytest.raises(ValueError):
        imports.p_email(text)


@pytest.mark.parametrize("text", ["o'brien@example.com", "a@localhost", "ü@example.com"])
def test_email_outside_the_fast_path_still_goes_through_the_validator(text):
    from django.core.validators import validate_email

    try:
        validate_email(text)
    except Exception:
        expected_ok = False
    else:
        expected_ok = True
    if expected_ok:
        assert imports.p_email(text) == text
    else:
        with pytest.raises(ValueError):
            imports.p_email(text)


def test_every_repeat_of_an_external_id_names_its_first_line():
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file(
            "customer_ref,placed_at,revenue,external_id\n"
            "C1,2026-01-05,1,A\n"
            "C1,2026-01-05,1,B\n"
            "C1,2026-01-05,1,A\n"
            "C1,2026-01-05,1,\n"
            "C1,2026-01-05,1,\n"
            "C1,2026-01-05,1,A\n"
            "C1,2026-01-05,1,B\n"
        )
    )
    assert messages(report) == [
        "line 4, column external_id: external_id repeats line 2",
        "line 7, column external_id: external_id repeats line 2",
        "line 8, column external_id: external_id repeats line 3",
    ]
    assert not Order.objects.exists()


def _index_defs(table: str) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass AND indisvalid",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


class _Statements:
    def __init__(self):
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)

    def count(self, fragment: str) -> int:
        return sum(fragment in s for s in self.sql)


def test_bulk_load_rebuilds_plain_indexes_only_when_the_load_dominates(write_path, monkeypatch):
    from django.db import connection

    if write_path == "python":
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(imports, "BULK_LOAD_MIN_ROWS", 2)
    before = _index_defs("crm_customer"), _index_defs("crm_order")
    seen = _Statements()
    with connection.execute_wrapper(seen):
        report = imports.customers_import(
            file=csv_file("external_id,first_name,email\nC1,Ann,a@x.io\nC2,Bo,b@x.io\n")
        )
        assert report.ok, messages(report)
        orders = imports.orders_import(
            file=csv_file("customer_ref,placed_at,revenue\nC1,2026-01-05,1\nC2,2026-01-05,2\n")
        )
        assert orders.ok, messages(orders)
    assert seen.count("DROP INDEX") > 0
    assert (_index_defs("crm_customer"), _index_defs("crm_order")) == before
    assert Customer.objects.filter(email="b@x.io").count() == 1  # indexes answer correctly
    # A load smaller than the table, or than BULK_LOAD_MIN_ROWS, keeps the indexes.
    CustomerFactory(external_id="C3")
    seen = _Statements()
    with connection.execute_wrapper(seen):
        report = imports.customers_import(
            file=csv_file("external_id,first_name\nC4,Di\nC5,Ed\n")  # 2 rows, 3 in the table
        )
        assert report.ok and seen.count("DROP INDEX") == 0
        report = imports.customers_import(file=csv_file("external_id,first_name\nC6,Fa\n"))
        assert report.ok and seen.count("DROP INDEX") == 0
    assert Customer.objects.count() == 6


def test_bulk_load_rebuilds_the_unique_indexes_of_external_ids_and_they_still_hold(
    write_path, monkeypatch
):
    from django.db import IntegrityError, connection, transaction

    if write_path == "python":
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(imports, "BULK_LOAD_MIN_ROWS", 2)
    seen = _Statements()
    with connection.execute_wrapper(seen):
        report = imports.customers_import(file=csv_file("external_id,first_name\nC1,Ann\nC2,Bo\n"))
        assert report.ok, messages(report)
        orders = imports.orders_import(
            file=csv_file(
                "customer_ref,external_id,placed_at,revenue\n"
                "C1,O1,2026-01-05,1\nC2,O2,2026-01-05,2\n"
            )
        )
        assert orders.ok, messages(orders)
    assert seen.count("DROP INDEX customer_external_id_unique") == 1
    assert seen.count("DROP INDEX order_external_id_unique") == 1
    assert not any("_pkey" in sql for sql in seen.sql if sql.startswith("DROP INDEX"))
    for make in (
        lambda: CustomerFactory(external_id="C1"),
        lambda: OrderFactory(customer=Customer.objects.get(external_id="C2"), external_id="O1"),
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            make()
    # A second file repeating an id already in the table still updates or skips, never doubles.
    report = imports.customers_import(file=csv_file("external_id,first_name\nC1,Anna\n"))
    assert report.ok and report.updated == 1
    assert Customer.objects.filter(external_id="C1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_bulk_load_keeps_the_indexes_when_another_session_uses_the_table(write_path, monkeypatch):
    from django.db import connections

    if write_path == "python":
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(imports, "BULK_LOAD_MIN_ROWS", 2)
    before = _index_defs("crm_customer")
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:  # a reader in an open transaction holds a share lock
            cursor.execute("SELECT count(*) FROM crm_customer")
        report = imports.customers_import(
            file=csv_file("external_id,first_name\nC1,Ann\nC2,Bo\nC3,Cy\n")
        )
    finally:
        other.rollback()
        other.close()
    assert report.ok, messages(report)
    assert report.created == 3
    assert _index_defs("crm_customer") == before


def _import_tz(tz) -> None:
    imports._IMPORT_TZ.set(tz)
    imports._IMPORT_UTC.set(None)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-05",
        "2026-01-05T10:30",
        "2026-01-05 10:30:15.123456",
        "2026-01-05T10:30:00Z",
        "2026-01-05T10:30:00+09:00",
        "2026-01-05T10:30:00-03:30",
    ],
)
def test_common_iso_date_times_are_staged_as_text(text):
    _import_tz(dt.UTC)
    assert imports.p_datetime_text(text) == text


@pytest.mark.parametrize("text", ["2026-02-30", "2026-01-05T25:00", "2026-13-01T10:00+09:00"])
def test_staged_date_times_are_still_checked(text):
    _import_tz(dt.UTC)
    with pytest.raises(ValueError, match="ISO"):
        imports.p_datetime_text(text)


def test_date_times_postgresql_might_read_differently_are_parsed_in_python():
    from zoneinfo import ZoneInfo

    _import_tz(dt.UTC)
    # Offsets beyond +-14:00 and week dates are not staged as text.
    assert isinstance(imports.p_datetime_text("2026-01-05T10:00+15:00"), dt.datetime)
    assert isinstance(imports.p_datetime_text("2026-W02-1"), dt.datetime)
    _import_tz(ZoneInfo("Asia/Seoul"))  # naive values are local, not UTC
    assert imports.p_datetime_text("2026-01-05 09:00") == dt.datetime(
        2026, 1, 5, 0, 0, tzinfo=dt.UTC
    )
    assert imports.p_datetime_text("2026-01-05T09:00+09:00") == "2026-01-05T09:00+09:00"


def test_imported_date_times_are_stored_at_the_right_moment():
    from django.utils import timezone

    CustomerFactory(external_id="C1")
    text = (
        "customer_ref,placed_at,revenue,external_id\n"
        "C1,2026-01-05,1,A\n"
        "C1,2026-01-05T10:30:15.5Z,1,B\n"
        "C1,2026-01-05 10:30-03:30,1,C\n"
    )
    assert imports.orders_import(file=csv_file(text)).ok
    with timezone.override("Asia/Seoul"):
        report = imports.orders_import(
            file=csv_file("customer_ref,placed_at,revenue,external_id\nC1,2026-01-05 09:00,1,D\n")
        )
    assert report.ok, messages(report)
    assert dict(Order.objects.values_list("external_id", "placed_at")) == {
        "A": dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
        "B": dt.datetime(2026, 1, 5, 10, 30, 15, 500000, tzinfo=dt.UTC),
        "C": dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC),
        "D": dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC),
    }
    # Re-importing the same file is recognised as identical (the staged casts compare equal).
    again = imports.orders_import(file=csv_file(text))
    assert (again.ok, again.created, again.unchanged) == (True, 0, 3)


def test_bad_date_time_reports_line_and_column_on_every_path():
    CustomerFactory(external_id="C1")
    report = imports.orders_import(
        file=csv_file("customer_ref,placed_at,revenue\nC1,2026-01-05,1\nC1,2026-02-30,1\n")
    )
    assert [(e.line, e.column) for e in report.errors] == [(3, "placed_at")]
    assert not Order.objects.exists()
