"""Chainable query vocabulary for crm models. Reads only."""

from django.db import models
from django.db.models import F, Func, Lookup, TextField

# Words shorter than this cannot use the trigram index (pg_trgm needs three characters).
SEARCH_MIN_WORD = 3
SEARCH_MAX_WORDS = 5


class CustomerSearchText(Func):
    """first_name || ' ' || last_name || ' ' || email || ' ' || phone.

    Exactly the expression of the GIN trigram index crm_customer_search_trgm (migration 0005),
    so that PostgreSQL can answer `search_text ILIKE '%word%'` from the index. All four
    columns are NOT NULL, so no COALESCE (which would change the expression).
    """

    template = "(%(expressions)s)"
    arg_joiner = " || ' ' || "
    output_field = TextField()

    def __init__(self, **extra):
        super().__init__(F("first_name"), F("last_name"), F("email"), F("phone"), **extra)


class ContainsText(Lookup):
    """Case-insensitive "contains" that a trigram index can serve: ILIKE on PostgreSQL (not
    Django's UPPER(x) LIKE UPPER(y), which no trigram index on x matches); LIKE elsewhere
    (SQLite's LIKE ignores ASCII case)."""

    lookup_name = "contains_text"

    def get_db_prep_lookup(self, value, connection):
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "%s", [f"%{escaped}%"]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        operator = "ILIKE" if connection.vendor == "postgresql" else "LIKE"
        return f"{lhs} {operator} {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


def search_words(text: str) -> list[str]:
    """The words of a search that take part: up to five, each at least three characters."""
    words = [w for w in (text or "").split() if len(w) >= SEARCH_MIN_WORD]
    return words[:SEARCH_MAX_WORDS]


class CustomerQuerySet(models.QuerySet):
    def base_queryset(self):
        return self.select_related("owner")

    def with_metrics(self):
        """LEFT JOIN the narrow metrics row; customers without one get None for metrics__*."""
        return self.select_related("metrics")

    def owned_by(self, user):
        return self.filter(owner=user)

    def unassigned(self):
        return self.filter(owner__isnull=True)

    def search(self, text: str):
        """Name, email or phone containing each word of `text` (case-insensitive); words
        shorter than three characters are ignored (see search_words).

        One ILIKE per word over the indexed search expression (GIN trigram on PostgreSQL).
        """
        qs = self
        for word in search_words(text):
            qs = qs.filter(ContainsText(CustomerSearchText(), word))
        return qs


class FollowUpQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status="open")

    def for_user(self, user):
        return self.filter(assigned_to=user)

    def due_by(self, day):
        return self.filter(due_on__lte=day)
