"""Property: any rule tree either compiles and runs on PostgreSQL, or is refused with a
ValidationError; never another exception."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.models import CustomerMetrics
from crm.tests.factories import CustomerFactory, SocialProfileFactory
from segments import rules
from segments.selectors import customers_for_rules

FIELD_NAMES = [*rules.FIELDS, "efort", "", "metrics__aov", "pk"]
OPERATOR_NAMES = [*rules.OPERATORS, "like", "==", "", "IN"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["2024-03", "2024-13", "regular", "store", "female", "active", "1e400"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)

conditions = st.fixed_dictionaries(
    {"field": st.sampled_from(FIELD_NAMES), "operator": st.sampled_from(OPERATOR_NAMES)},
    optional={"value": values},
)


def groups(children):
    return st.fixed_dictionaries(
        {
            "op": st.sampled_from(["and", "or", "xor"]),
            "conditions": st.lists(children, min_size=0, max_size=4),
        }
    )


trees = st.recursive(conditions, groups, max_leaves=8)
top = st.one_of(groups(trees), trees, scalars)


@pytest.fixture
def population(db):
    a = CustomerFactory(service_effort=5, birth_year=1980, city="Seoul")
    CustomerFactory(service_effort=None, city="")
    CustomerMetrics.objects.create(
        customer=a,
        order_count=3,
        first_order_at=dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
    )
    SocialProfileFactory(customer=a, followers=1200)


@pytest.mark.django_db
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=top)
def test_random_rule_trees_compile_and_run_or_are_refused(population, tree):
    try:
        q = rules.compile_rules(tree)
    except ValidationError as exc:
        assert exc.messages
        assert all(isinstance(m, str) and m for m in exc.messages)
        return
    count = customers_for_rules(as_of=dt.date(2026, 1, 1)).filter(q).count()
    assert 0 <= count <= 2
    assert isinstance(rules.describe(tree), str)


def typed_value(spec):
    by_kind = {
        rules.INT: st.integers(min_value=-1000, max_value=10**6),
        rules.DECIMAL: st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str),
        rules.STRING: st.text(max_size=10),
        rules.CHOICE: st.sampled_from(spec.choice_values or ("x",)),
        rules.COHORT: st.dates(min_value=dt.date(1900, 1, 1)).map(lambda d: d.strftime("%Y-%m")),
        rules.BOOL: st.booleans(),
    }
    return by_kind[spec.kind]


@st.composite
def typed_condition(draw):
    spec = rules.FIELDS[draw(st.sampled_from(sorted(rules.FIELDS)))]
    operator = draw(st.sampled_from(spec.operators))
    one = typed_value(spec)
    if operator == "is empty":
        return {"field": spec.name, "operator": operator}
    if operator == "between":
        key = (
            Decimal
            if spec.kind == rules.DECIMAL
            else (lambda v: v.strip() if isinstance(v, str) else v)
        )
        value = sorted(draw(st.lists(one, min_size=2, max_size=2)), key=key)
    elif operator in ("in", "not in"):
        value = draw(st.lists(one, min_size=1, max_size=3))
    else:
        value = draw(one)
    return {"field": spec.name, "operator": operator, "value": value}


typed_trees = st.recursive(
    typed_condition(),
    lambda children: st.fixed_dictionaries(
        {
            "op": st.sampled_from(["and", "or"]),
            "conditions": st.lists(children, min_size=1, max_size=3),
        }
    ),
    max_leaves=6,
)


@pytest.mark.django_db
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=typed_trees)
def test_well_typed_rule_trees_run_on_postgresql(population, tree):
    if "conditions" not in tree:
        tree = {"op": "and", "conditions": [tree]}
    try:
        q = rules.compile_rules(tree)
    except ValidationError as exc:
        # Well-typed trees are refused only for text with a NUL or blank "contains" text.
        assert all("NUL" in m or "contains" in m for m in exc.messages), exc.messages
        return
    count = customers_for_rules(as_of=dt.date(2026, 1, 1)).filter(q).count()
    assert 0 <= count <= 2
