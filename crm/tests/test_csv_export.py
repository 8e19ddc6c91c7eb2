from crm.csv_export import csv_response, csv_safe


def test_formula_cells_are_neutralised_and_numbers_kept():
    assert csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_safe("@cmd") == "'@cmd"
    assert csv_safe("Kim") == "Kim"
    assert csv_safe(-5) == -5
    assert csv_safe(None) == ""


def test_response_streams_header_and_rows():
    response = csv_response(
        filename="x.csv", header=["a", "b"], rows=iter([(1, "=2"), (None, "ok")])
    )
    assert response["Content-Disposition"] == 'attachment; filename="x.csv"'
    body = b"".join(response.streaming_content).decode()
    assert body == "a,b\r\n1,'=2\r\n,ok\r\n"
