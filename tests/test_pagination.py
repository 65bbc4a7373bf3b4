"""The page number shared by the dashboard and the operator console."""

import pytest

from reseller.pagination import MAX_PAGE, page_number


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 1),
        ("page=3", 3),
        ("page=0", 1),
        ("page=-2", 1),
        ("page=abc", 1),
        ("page=%C2%B2", 1),  # '²'.isdigit() is True; int('²') fails
        ("page=999999", MAX_PAGE),
        ("page=" + "9" * 5000, 1),
    ],
)
def test_page_number(app, query, expected):
    with app.test_request_context("/?" + query):
        assert page_number() == expected
