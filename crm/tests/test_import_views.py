"""The upload screen /import/: permission matrix, success, every error as a 4xx (never a 500)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.models import Customer, Order
from crm.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

URL = "/import/"


def upload(content: bytes, name: str = "data.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_url_name():
    assert reverse("crm:import") == URL


def test_anonymous_is_sent_to_login(client):
    for response in (client.get(URL), client.post(URL)):
        assert response.status_code == 302
        assert response.url.startswith("/login/")


def test_support_staff_is_forbidden(client_support):
    assert client_support.get(URL).status_code == 403
    post = client_support.post(
        URL, {"kind": "customers", "file": upload(b"external_id,first_name\nA,Al\n")}
    )
    assert post.status_code == 403
    assert not Customer.objects.exists()


def test_manager_sees_the_form_with_the_columns(client_manager):
    response = client_manager.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="kind"' in body and 'enctype="multipart/form-data"' in body
    assert "customer_ref" in body and "acquisition_cost" in body


def test_manager_imports_customers_and_sees_the_report(client_manager):
    response = client_manager.post(
        URL, {"kind": "customers", "file": upload(b"external_id,first_name\nA,Al\nB,Bo\n")}
    )
    assert response.status_code == 200
    assert "2 row(s) read: 2 created" in response.content.decode()
    assert Customer.objects.count() == 2


def test_bad_rows_are_listed_and_nothing_written(client_manager):
    CustomerFactory(external_id="C1")
    response = client_manager.post(
        URL,
        {
            "kind": "orders",
            "file": upload(b"customer_ref,placed_at,revenue\nC1,2026-01-01,10\nC1,soon,10\n"),
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "line 3, column placed_at" in body
    assert "nothing was imported" in body
    assert not Order.objects.exists()


def test_create_customers_option(client_manager):
    response = client_manager.post(
        URL,
        {
            "kind": "orders",
            "create_customers": "on",
            "file": upload(b"customer_ref,placed_at,revenue\nNEW,2026-01-01,10\n"),
        },
    )
    assert response.status_code == 200
    assert Customer.objects.get(external_id="NEW").orders.count() == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "The submitted file is empty"),  # Django's own FileField check
        ("external_id,first_name\n".encode("utf-16"), "not UTF-8"),
        (b"external_id,name\nA,Al\n", "Unknown column(s) name"),
        (b"first_name\nAl\n", "Required column(s) missing: external_id"),
        (b"external_id,external_id\n", "appears twice"),
    ],
)
def test_file_errors_are_4xx(client_manager, content, expected):
    response = client_manager.post(URL, {"kind": "customers", "file": upload(content)})
    assert response.status_code == 400
    assert expected in response.content.decode()


def test_missing_file_and_bad_kind_are_400(client_manager):
    assert client_manager.post(URL, {"kind": "customers"}).status_code == 400
    response = client_manager.post(URL, {"kind": "pets", "file": upload(b"a\n1\n")})
    assert response.status_code == 400


def test_oversized_upload_is_refused(client_manager, settings):
    settings.CRM_MAX_UPLOAD_BYTES = 100
    response = client_manager.post(
        URL, {"kind": "customers", "file": upload(b"external_id,first_name\n" + b"A,Al\n" * 50)}
    )
    assert response.status_code == 413
    assert "the limit is 100" in response.content.decode()
    assert not Customer.objects.exists()


def test_oversized_declared_length_is_refused_before_reading(client_manager, settings):
    settings.CRM_MAX_UPLOAD_BYTES = 10
    response = client_manager.post(URL, {"kind": "customers", "file": upload(b"x" * 100_000)})
    assert response.status_code == 413
    assert "The upload is" in response.content.decode()


def test_report_page_is_constant_in_queries(client_manager, django_assert_max_num_queries):
    rows = b"".join(b"K%d,Name%d\n" % (i, i) for i in range(300))
    with django_assert_max_num_queries(25):
        response = client_manager.post(
            URL, {"kind": "customers", "file": upload(b"external_id,first_name\n" + rows)}
        )
    assert response.status_code == 200
    assert Customer.objects.count() == 300
