"""The rule compiler: validation messages, every operator, every field kind, run on PostgreSQL."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from crm.models import CustomerMetrics
from crm.tests.factories import CustomerFactory, SocialProfileFactory, UserFactory
from segments import rules
from segments.selectors import customers_for_rules

AS_OF = dt.date(2026, 6, 30)


def cond(field, operator, value=None):
    c = {"field": field, "operator": operator}
    if operator != "is empty":
        c["value"] = value
    return c


def group(*conditions, op="and"):
    return {"op": op, "conditions": list(conditions)}


def messages(rule_tree):
    with pytest.raises(ValidationError) as exc:
        rules.validate(rule_tree)
    return exc.value.messages


# -- validation, pure ---------------------------------------------------------------------


def test_unknown_field_is_named_with_its_position():
    tree = group(cond("effort", ">=", 7), group(cond("efort", "=", 3), op="or"))
    assert messages(tree) == ["Condition 2.1: unknown field 'efort'"]


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        (cond("effort", "contains", "x"), "operator 'contains' does not apply to effort"),
        (cond("effort", "=", "seven"), "is not a whole number"),
        (cond("effort", "=", True), "is not a whole number"),
        (cond("effort", "=", 10**12), "out of range"),
        (cond("aov", ">", "abc"), "is not a number"),
        (cond("aov", ">", "NaN"), "out of range"),
        (cond("buyer_type", "=", "vip"), "is not one of"),
        (cond("cohort", "=", "2024-13"), "is not a month"),
        (cond("has_owner", "=", "maybe"), "is not yes or no"),
        (cond("city", "=", 5), "is not text"),
        (cond("effort", "between", [8, 2]), "low value is above the high value"),
        (cond("effort", "between", [1]), "needs two values"),
        (cond("city", "in", []), "non-empty list"),
        ({"field": "city", "operator": "is empty", "value": "x"}, "takes no value"),
        (cond("effort", "=", None), "a value is required"),
        ({"field": "effort", "operator": "=", "value": 1, "extra": 1}, "unknown keys extra"),
    ],
)
def test_bad_conditions_are_refused_with_a_message(condition, fragment):
    msgs = messages(group(cond("effort", ">", 1), condition))
    assert len(msgs) == 1
    assert msgs[0].startswith("Condition 2: ")
    assert fragment in msgs[0]


@pytest.mark.parametrize(
    "tree",
    [None, [], "x", {"op": "xor", "conditions": [cond("effort", "=", 1)]}, group(), {"op": "and"}],
)
def test_bad_groups_are_refused(tree):
    assert messages(tree)


def test_every_problem_is_reported():
    tree = group(cond("efort", "=", 1), cond("effort", "=", "x"), op="or")
    msgs = messages(tree)
    assert [m.split(":")[0] for m in msgs] == ["Condition 1", "Condition 2"]


def test_validation_normalises_values():
    tree = group(
        cond("effort", "=", "7"),
        cond("aov", ">=", 12.5),
        cond("has_owner", "=", "yes"),
        cond("city", "in", [" Seoul "]),
    )
    cleaned = rules.validate(tree)
    values = [c.get("value") for c in cleaned["conditions"]]
    assert values == [7, "12.5", True, ["Seoul"]]


def test_every_registry_field_has_a_kind_with_operators():
    for spec in rules.FIELDS.values():
        assert spec.operators
        assert set(spec.operators) <= set(rules.OPERATORS)


def test_describe_reads_like_words():
    tree = group(
        cond("effort", ">=", 7),
        group(cond("city", "=", "Seoul"), cond("followers", ">", 3000), op="or"),
    )
    assert (
        rules.describe(tree)
        == "Service effort ≥ 7 and (City is Seoul or Followers (all networks) > 3000)"
    )


# -- compiled and run on PostgreSQL --------------------------------------------------------

pytestmark_db = pytest.mark.django_db


@pytest.fixture
def people(db):
    """Four customers with distinct values for every field kind."""
    owner = UserFactory()
    a = CustomerFactory(
        first_name="A",
        service_effort=2,
        city="Seoul",
        birth_year=1990,
        owner=owner,
        gender="female",
        web_savviness=5,
        acquisition_channel="instagram ads",
    )
    b = CustomerFactory(first_name="B", service_effort=8, city="Busan", birth_year=2005)
    c = CustomerFactory(first_name="C", service_effort=None, city="", birth_year=None)
    d = CustomerFactory(first_name="D", service_effort=5, city="Seoul", birth_year=1960)
    tz = dt.UTC
    CustomerMetrics.objects.create(
        customer=a,
        aov=Decimal("300.00"),
        order_count=10,
        buyer_type="regular",
        preferred_channel="store",
        first_order_at=dt.datetime(2023, 1, 5, tzinfo=tz),
        contribution_window=Decimal("500.00"),
        value_decile=1,
        favourite_category="Shoes",
    )
    CustomerMetrics.objects.create(
        customer=b,
        aov=Decimal("40.50"),
        order_count=1,
        buyer_type="first_time",
        preferred_channel="online",
        first_order_at=dt.datetime(2026, 3, 1, tzinfo=tz),
        contribution_window=Decimal("-20.00"),
        value_decile=9,
        favourite_category="Bags",
    )
    CustomerMetrics.objects.create(
        customer=d,
        aov=None,
        order_count=0,
        buyer_type="none",
        contribution_window=Decimal("0"),
    )
    SocialProfileFactory(customer=b, followers=3000)
    SocialProfileFactory(customer=b, followers=500)
    SocialProfileFactory(customer=a, followers=10)
    return {"A": a, "B": b, "C": c, "D": d}


def run(tree):
    """The customers' first names that `tree` selects, the same whether followers come from a
    subquery per customer or from the joined totals (everyone=True)."""
    q = rules.compile_rules(tree)
    found = [
        set(
            customers_for_rules(as_of=AS_OF, everyone=everyone)
            .filter(q)
            .values_list("first_name", flat=True)
        )
        for everyone in (False, True)
    ]
    assert found[0] == found[1]
    return found[0]


CASES = [
    # int: service effort, NULL for C
    (cond("effort", "=", 8), {"B"}),
    (cond("effort", "!=", 8), {"A", "C", "D"}),
    (cond("effort", "<", 5), {"A"}),
    (cond("effort", "<=", 5), {"A", "D"}),
    (cond("effort", ">", 5), {"B"}),
    (cond("effort", ">=", 5), {"B", "D"}),
    (cond("effort", "between", [2, 5]), {"A", "D"}),
    (cond("effort", "in", [2, 8]), {"A", "B"}),
    (cond("effort", "not in", [2, 8]), {"C", "D"}),
    (cond("effort", "is empty"), {"C"}),
    # int computed: age (as_of 2026) and followers (sum over profiles, 0 without)
    (cond("age", ">=", 60), {"D"}),
    (cond("age", "between", [20, 40]), {"A", "B"}),
    (cond("followers", ">=", 3000), {"B"}),
    (cond("followers", "=", 0), {"C", "D"}),
    # decimal from metrics; C has no metrics row, D has aov NULL
    (cond("aov", ">", "100"), {"A"}),
    (cond("aov", "<=", 40.5), {"B"}),
    (cond("aov", "is empty"), {"C", "D"}),
    (cond("contribution_window", "<", 0), {"B"}),
    # string
    (cond("city", "=", "Seoul"), {"A", "D"}),
    (cond("city", "!=", "Seoul"), {"B", "C"}),
    (cond("city", "in", ["Busan", "Daegu"]), {"B"}),
    (cond("city", "not in", ["Busan"]), {"A", "C", "D"}),
    (cond("city", "is empty"), {"C"}),
    (cond("city", "contains", "eou"), {"A", "D"}),
    (cond("favourite_category", "contains", "shoe"), {"A"}),
    (cond("acquisition_channel", "contains", "Instagram"), {"A"}),
    # choice
    (cond("buyer_type", "=", "regular"), {"A"}),
    (cond("buyer_type", "in", ["regular", "first_time"]), {"A", "B"}),
    (cond("buyer_type", "not in", ["regular"]), {"B", "C", "D"}),
    (cond("preferred_channel", "=", "store"), {"A"}),
    (cond("gender", "=", "female"), {"A"}),
    (cond("status", "=", "active"), {"A", "B", "C", "D"}),
    # cohort (month of first order)
    (cond("cohort", "=", "2023-01"), {"A"}),
    (cond("cohort", ">=", "2024-01"), {"B"}),
    (cond("cohort", "between", ["2022-12", "2023-02"]), {"A"}),
    (cond("cohort", "is empty"), {"C", "D"}),
    # boolean
    (cond("has_owner", "=", True), {"A"}),
    (cond("has_owner", "!=", True), {"B", "C", "D"}),
    # int from metrics
    (cond("value_decile", "=", 1), {"A"}),
    (cond("order_count", ">=", 1), {"A", "B"}),
    (cond("web_savviness", ">=", 4), {"A"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("condition", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_operator_and_field_kind_in_sql(people, condition, expected):
    assert run(group(condition)) == expected


@pytest.mark.django_db
def test_and_or_and_nested_groups(people):
    tree = group(
        cond("city", "=", "Seoul"),
        group(cond("effort", "<", 3), cond("age", ">", 60), op="or"),
    )
    assert run(tree) == {"A", "D"}
    assert run(group(cond("city", "=", "Busan"), cond("effort", "=", 2), op="or")) == {"A", "B"}
    assert run(group(cond("city", "=", "Busan"), cond("effort", "=", 2))) == set()


@pytest.mark.django_db
def test_every_registry_field_compiles_and_runs(people):
    for name, spec in rules.FIELDS.items():
        q = rules.compile_rules(group(cond(name, "is empty")))
        assert customers_for_rules(as_of=AS_OF).filter(q).count() >= 0, spec


@pytest.mark.django_db
def test_apps_above_can_register_a_rule_field(people):
    from django.db.models import CharField, Value

    from segments import selectors

    spec = rules.FieldSpec(
        name="latest_nps_category",
        label="Latest NPS category",
        kind=rules.CHOICE,
        choices=(("promoter", "Promoter"), ("passive", "Passive"), ("detractor", "Detractor")),
    )
    selectors.rule_field_register(
        spec=spec, annotation=lambda as_of: Value("promoter", output_field=CharField())
    )
    try:
        assert run(group(cond("latest_nps_category", "=", "promoter"))) == {"A", "B", "C", "D"}
        assert "not one of" in messages(group(cond("latest_nps_category", "=", "fan")))[0]
    finally:
        del rules.FIELDS["latest_nps_category"]
        del selectors._EXTRA_ANNOTATIONS["latest_nps_category"]
    with pytest.raises(ValueError):
        selectors.rule_field_register(
            spec=rules.FieldSpec("city", "City", rules.STRING), annotation=None
        )


# -- evaluation order ---------------------------------------------------------------------


def _sql_positions(tree, *needles):
    query = customers_for_rules(as_of=AS_OF).filter(rules.compile_rules(tree)).values("pk")
    where = str(query.query).split(" WHERE ", 1)[1]
    return [where.index(needle) for needle in needles]


@pytest.mark.parametrize("op", ["and", "or"])
def test_costly_fields_are_compiled_after_the_others_of_their_group(op):
    """The followers subquery comes after the column test, in AND and in OR groups and when
    nested, so that the database can stop before it; the other conditions keep their order."""
    tree = group(
        cond("followers", ">=", 3000),
        cond("buyer_type", "in", ["regular", "occasional"]),
        group(cond("followers", "<", 100), cond("effort", ">=", 8)),
        cond("city", "=", "Seoul"),
        op=op,
    )
    buyer, city, effort, followers = _sql_positions(
        tree, '"buyer_type" IN', '"city" = ', '"service_effort" >= ', '"crm_socialprofile"'
    )
    # Column tests in their order, then the costly items in theirs: the followers test, then
    # the nested group, whose own column test comes first.
    assert buyer < city < followers < effort


@pytest.mark.django_db
@pytest.mark.parametrize("op", ["and", "or"])
def test_costly_order_selects_the_same_customers(op):
    loud = CustomerFactory(service_effort=9)
    SocialProfileFactory(customer=loud, followers=5000)
    quiet = CustomerFactory(service_effort=9)
    CustomerFactory(service_effort=2)
    tree = group(cond("followers", ">=", 3000), cond("effort", ">=", 8), op=op)
    found = set(
        customers_for_rules(as_of=AS_OF)
        .filter(rules.compile_rules(tree))
        .values_list("pk", flat=True)
    )
    assert found == ({loud.pk} if op == "and" else {loud.pk, quiet.pk})
