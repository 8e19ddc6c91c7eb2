"""Bucket rules: the field registry, validation, compilation to a Django Q, and words.

Rules are JSON. A group is {"op": "and"|"or", "conditions": [...]}; each item is a nested
group or a condition {"field": name, "operator": op, "value": json}. Operators:
"=", "!=", "<", "<=", ">", ">=", "between" ([low, high]), "in", "not in" (a list),
"is empty" (no value), "contains" (text).

The compiled Q refers to the annotation names that segments.selectors.customers_for_rules()
adds (one per registry field), so rules run in SQL. "!=" and "not in" also match customers
whose value is empty, as a manager reading "city is not Seoul" expects.

No ORM queries and no I/O here: validation and compilation are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.models import BuyerType, Channel, CustomerStatus, Gender

INT, DECIMAL, STRING, CHOICE, COHORT, BOOL = "int", "decimal", "string", "choice", "cohort", "bool"

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "between", "in", "not in", "is empty", "contains")
_ORDERED = ("=", "!=", "<", "<=", ">", ">=", "between", "in", "not in", "is empty")
OPERATORS_BY_KIND = {
    INT: _ORDERED,
    DECIMAL: _ORDERED,
    COHORT: _ORDERED,
    STRING: ("=", "!=", "in", "not in", "is empty", "contains"),
    CHOICE: ("=", "!=", "in", "not in", "is empty"),
    BOOL: ("=", "!=", "is empty"),
}
OPERATOR_WORDS = {
    "=": _("is"),
    "!=": _("is not"),
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "between": _("is between"),
    "in": _("is one of"),
    "not in": _("is none of"),
    "is empty": _("is empty"),
    "contains": _("contains"),
}

MAX_DEPTH = 5
MAX_CONDITIONS = 200
MAX_LIST = 500
MAX_TEXT = 200
INT_LIMIT = 10**9
DECIMAL_LIMIT = Decimal("1e12")
COHORT_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: Any
    kind: str
    choices: tuple[tuple[str, Any], ...] = field(default=())
    # Computed per customer by a subquery (not a column): compiled after the other conditions
    # of its group, so that AND and OR stop before it wherever they can (_compile_group).
    costly: bool = False

    @property
    def operators(self) -> tuple[str, ...]:
        return OPERATORS_BY_KIND[self.kind]

    @property
    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _label in self.choices)


def _spec(name, label, kind, choices=(), costly=False):
    return FieldSpec(name=name, label=label, kind=kind, choices=tuple(choices), costly=costly)


# The registry. segments.selectors.RULE_ANNOTATIONS must have an entry for each name.
FIELDS: dict[str, FieldSpec] = {
    s.name: s
    for s in [
        _spec("effort", _("Service effort"), INT),
        _spec("influence", _("Influence"), INT),
        _spec("buyer_type", _("Buyer type"), CHOICE, BuyerType.choices),
        _spec("aov", _("Average order value"), DECIMAL),
        _spec("order_count", _("Orders (lifetime)"), INT),
        _spec("orders_window", _("Orders (365 days)"), INT),
        _spec("days_since_last_order", _("Days since last order"), INT),
        _spec("preferred_channel", _("Preferred channel"), CHOICE, Channel.choices),
        _spec("favourite_category", _("Favourite category"), STRING),
        _spec("value_decile", _("Value decile"), INT),
        _spec("status", _("Status"), CHOICE, CustomerStatus.choices),
        _spec("city", _("City"), STRING),
        _spec("region", _("Region"), STRING),
        _spec("country", _("Country"), STRING),
        _spec("age", _("Age"), INT),
        _spec("gender", _("Gender"), CHOICE, Gender.choices),
        _spec("web_savviness", _("Web savviness"), INT),
        _spec("cohort", _("Cohort (month of first order)"), COHORT),
        _spec("acquisition_channel", _("Acquisition channel"), STRING),
        _spec("revenue_lifetime", _("Revenue (lifetime)"), DECIMAL),
        _spec("margin_window", _("Margin (365 days)"), DECIMAL),
        _spec("contribution_window", _("Contribution (365 days)"), DECIMAL),
        _spec("contribution_lifetime", _("Contribution (lifetime)"), DECIMAL),
        _spec("cost_to_serve_window", _("Cost to serve (365 days)"), DECIMAL),
        _spec("minutes_window", _("Minutes served (365 days)"), INT),
        _spec("followers", _("Followers (all networks)"), INT, costly=True),
        _spec("has_owner", _("Has an account owner"), BOOL),
    ]
}


class _Invalid(Exception):
    """A value problem inside one condition; turned into a message naming the condition."""


def _error(path: str, message) -> str:
    if path:
        return gettext("Condition %(path)s: %(message)s") % {"path": path, "message": message}
    return gettext("Rules: %(message)s") % {"message": message}


# -- values -------------------------------------------------------------------------------


def _clean_scalar(spec: FieldSpec, value: Any) -> Any:
    """One value for this field, normalised to what the JSON should hold; raises _Invalid."""
    kind = spec.kind
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            whole_float = isinstance(value, float) and value.is_integer()
            if whole_float or (isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,10}\s*", value)):
                value = int(value)
            else:
                raise _Invalid(gettext("%(value)r is not a whole number") % {"value": value})
        if not -INT_LIMIT <= value <= INT_LIMIT:
            raise _Invalid(gettext("%(value)s is out of range") % {"value": value})
        return value
    if kind == DECIMAL:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise _Invalid(gettext("%(value)r is not a number") % {"value": value})
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid(gettext("%(value)r is not a number") % {"value": value})
        if not number.is_finite() or abs(number) >= DECIMAL_LIMIT:
            raise _Invalid(gettext("%(value)s is out of range") % {"value": value})
        return str(number.quantize(Decimal("0.01")) if number.as_tuple().exponent < -2 else number)
    if kind == BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0"):
            return False
        raise _Invalid(gettext("%(value)r is not yes or no") % {"value": value})
    if not isinstance(value, str):
        raise _Invalid(gettext("%(value)r is not text") % {"value": value})
    value = value.strip()
    if "\x00" in value:
        raise _Invalid(gettext("the text contains a NUL character"))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(gettext("the text is not valid Unicode"))
    if kind == COHORT:
        if not COHORT_RE.match(value):
            raise _Invalid(gettext("%(value)r is not a month like 2024-03") % {"value": value})
        return value
    if kind == CHOICE:
        if value not in spec.choice_values:
            raise _Invalid(
                gettext("%(value)r is not one of %(choices)s")
                % {"value": value, "choices": ", ".join(spec.choice_values)}
            )
        return value
    if len(value) > MAX_TEXT:
        raise _Invalid(gettext("the text is longer than %(max)d characters") % {"max": MAX_TEXT})
    return value


def _clean_value(spec: FieldSpec, operator: str, value: Any) -> Any:
    if operator == "is empty":
        if value not in (None, "", []):
            raise _Invalid(gettext("'is empty' takes no value"))
        return None
    if operator == "between":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise _Invalid(gettext("'between' needs two values [low, high]"))
        low, high = (_clean_scalar(spec, v) for v in value)
        if _sort_key(spec, low) > _sort_key(spec, high):
            raise _Invalid(gettext("the low value is above the high value"))
        return [low, high]
    if operator in ("in", "not in"):
        if not isinstance(value, list | tuple) or not value:
            raise _Invalid(gettext("'%(op)s' needs a non-empty list of values") % {"op": operator})
        if len(value) > MAX_LIST:
            raise _Invalid(gettext("more than %(max)d values") % {"max": MAX_LIST})
        return [_clean_scalar(spec, v) for v in value]
    if value is None:
        raise _Invalid(gettext("a value is required"))
    if operator == "contains" and (not isinstance(value, str) or not value.strip()):
        raise _Invalid(gettext("'contains' needs some text"))
    return _clean_scalar(spec, value)


def _sort_key(spec: FieldSpec, value):
    return Decimal(value) if spec.kind == DECIMAL else value


# -- validation ---------------------------------------------------------------------------


def validate(rules: Any) -> dict:
    """Check a rule tree against the registry; return it normalised.

    Raises ValidationError with one message per problem, each naming the condition by its
    position ("Condition 2.1: unknown field 'efort'").
    """
    errors: list[str] = []
    counter = [0]
    cleaned = _validate_group(rules, "", 1, errors, counter)
    if counter[0] > MAX_CONDITIONS:
        errors.append(_error("", gettext("more than %(max)d conditions") % {"max": MAX_CONDITIONS}))
    if errors:
        raise ValidationError(errors)
    return cleaned


def _validate_group(group, path, depth, errors, counter):
    if not isinstance(group, dict):
        errors.append(_error(path, gettext("a group must be an object with op and conditions")))
        return None
    unknown = set(group) - {"op", "conditions"}
    if unknown:
        errors.append(
            _error(path, gettext("unknown keys %(keys)s") % {"keys": ", ".join(sorted(unknown))})
        )
    op = group.get("op")
    if op not in ("and", "or"):
        errors.append(_error(path, gettext("group operator %(op)r must be and or or") % {"op": op}))
    if depth > MAX_DEPTH:
        errors.append(_error(path, gettext("groups nest deeper than %(max)d") % {"max": MAX_DEPTH}))
        return None
    items = group.get("conditions")
    if not isinstance(items, list) or not items:
        errors.append(_error(path, gettext("a group needs at least one condition")))
        return None
    cleaned = []
    for index, item in enumerate(items, start=1):
        item_path = f"{path}.{index}" if path else str(index)
        if isinstance(item, dict) and "conditions" in item:
            cleaned.append(_validate_group(item, item_path, depth + 1, errors, counter))
        else:
            counter[0] += 1
            cleaned.append(_validate_condition(item, item_path, errors))
    return {"op": op, "conditions": cleaned}


def _validate_condition(condition, path, errors):
    if not isinstance(condition, dict):
        errors.append(_error(path, gettext("a condition must be an object")))
        return None
    unknown = set(condition) - {"field", "operator", "value"}
    if unknown:
        errors.append(
            _error(path, gettext("unknown keys %(keys)s") % {"keys": ", ".join(sorted(unknown))})
        )
        return None
    name = condition.get("field")
    spec = FIELDS.get(name) if isinstance(name, str) else None
    if spec is None:
        errors.append(_error(path, gettext("unknown field %(field)r") % {"field": name}))
        return None
    operator = condition.get("operator")
    if not isinstance(operator, str) or operator not in spec.operators:
        errors.append(
            _error(
                path,
                gettext("operator %(op)r does not apply to %(field)s (use one of %(ops)s)")
                % {"op": operator, "field": name, "ops": ", ".join(spec.operators)},
            )
        )
        return None
    try:
        value = _clean_value(spec, operator, condition.get("value"))
    except _Invalid as exc:
        errors.append(_error(path, f"{name}: {exc}"))
        return None
    out = {"field": name, "operator": operator}
    if operator != "is empty":
        out["value"] = value
    return out


# -- compilation --------------------------------------------------------------------------


def compile_rules(rules: Any) -> Q:
    """Validate, then return a Q over customers_for_rules() annotations. Raises ValidationError."""
    return _compile_group(validate(rules))


def _costly(item: dict) -> bool:
    """Whether a validated item reads a field computed by a subquery (FieldSpec.costly)."""
    if "conditions" in item:
        return any(_costly(child) for child in item["conditions"])
    return FIELDS[item["field"]].costly


def _compile_group(group: dict) -> Q:
    """AND or OR of the group's items, those reading a costly field last (a stable order
    otherwise): both are commutative in SQL's three-valued logic, so the result is the same,
    and the database evaluates left to right and stops at the first deciding operand. In the
    nightly job's CASE over every customer, a followers subquery placed after a buyer-type
    test is run for the customers that pass it only."""
    items = sorted(group["conditions"], key=_costly)
    parts = [
        _compile_group(item) if "conditions" in item else _compile_condition(item) for item in items
    ]
    result = parts[0]
    for part in parts[1:]:
        result = (result & part) if group["op"] == "and" else (result | part)
    return result


def _python_value(spec: FieldSpec, value):
    return Decimal(value) if spec.kind == DECIMAL else value


def _compile_condition(condition: dict) -> Q:
    name, operator = condition["field"], condition["operator"]
    spec = FIELDS[name]
    value = condition.get("value")
    if isinstance(value, list):
        value = [_python_value(spec, v) for v in value]
    elif value is not None:
        value = _python_value(spec, value)
    empty = Q(**{f"{name}__isnull": True})
    if spec.kind == STRING:
        empty |= Q(**{name: ""})
    if operator == "is empty":
        return empty
    if operator == "=":
        return Q(**{name: value})
    if operator == "!=":
        return ~Q(**{name: value}) | Q(**{f"{name}__isnull": True})
    if operator in ("<", "<=", ">", ">="):
        lookup = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[operator]
        return Q(**{f"{name}__{lookup}": value})
    if operator == "between":
        return Q(**{f"{name}__gte": value[0], f"{name}__lte": value[1]})
    if operator == "in":
        return Q(**{f"{name}__in": value})
    if operator == "not in":
        return ~Q(**{f"{name}__in": value}) | Q(**{f"{name}__isnull": True})
    if operator == "contains":
        return Q(**{f"{name}__icontains": value})
    raise AssertionError(operator)  # pragma: no cover - validate() refused it


# -- words --------------------------------------------------------------------------------


def _value_words(spec: FieldSpec, value) -> str:
    labels = dict(spec.choices)
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    return str(labels.get(value, value))


def condition_words(condition: dict) -> str:
    spec = FIELDS.get(condition.get("field"))
    if spec is None:
        return str(condition)
    operator = condition.get("operator")
    value = condition.get("value")
    words = f"{spec.label} {OPERATOR_WORDS.get(operator, operator)}"
    if operator == "is empty":
        return words
    if operator == "between" and isinstance(value, list) and len(value) == 2:
        low, high = (_value_words(spec, v) for v in value)
        return f"{words} {low} {gettext('and')} {high}"
    if isinstance(value, list):
        return f"{words} {', '.join(_value_words(spec, v) for v in value)}"
    return f"{words} {_value_words(spec, value)}"


def describe(rules: Any) -> str:
    """The rules as one sentence, e.g. "Service effort ≥ 7 and (City is Seoul or ...)"."""
    if not isinstance(rules, dict) or not rules.get("conditions"):
        return gettext("(no rules)")
    return _describe_group(rules, top=True)


def _describe_group(group: dict, top: bool = False) -> str:
    joiner = f" {gettext('and') if group.get('op') == 'and' else gettext('or')} "
    parts = [
        _describe_group(item)
        if isinstance(item, dict) and "conditions" in item
        else str(condition_words(item))
        if isinstance(item, dict)
        else str(item)
        for item in group.get("conditions", [])
    ]
    text = joiner.join(parts)
    return text if top or len(parts) == 1 else f"({text})"


def describe_lines(rules: Any) -> list[str]:
    """The rules as indented lines, one condition per line; used for readable diffs."""
    lines: list[str] = []

    def walk(group, indent):
        op = gettext("all of") if group.get("op") == "and" else gettext("any of")
        lines.append(f"{'  ' * indent}{op}:")
        for item in group.get("conditions", []):
            if isinstance(item, dict) and "conditions" in item:
                walk(item, indent + 1)
            elif isinstance(item, dict):
                lines.append(f"{'  ' * (indent + 1)}{condition_words(item)}")

    if isinstance(rules, dict) and rules.get("conditions"):
        walk(rules, 0)
    return lines


def top_level_branches(rules: dict) -> list[tuple[str, Any]]:
    """For reasons: (path, item) of the top-level items of a validated "or" group; for an
    "and" group one branch covering everything."""
    if rules.get("op") == "or":
        return [(str(i), item) for i, item in enumerate(rules["conditions"], start=1)]
    return [("", rules)]


def compile_item(item: dict) -> Q:
    """Compile one validated item (group or condition)."""
    return _compile_group(item) if "conditions" in item else _compile_condition(item)


def item_words(item: dict) -> str:
    if "conditions" in item:
        return _describe_group(item, top=True)
    return str(condition_words(item))


def conditions(rules: dict):
    """Every condition of validated rules, depth first."""
    for item in rules.get("conditions", []):
        if "conditions" in item:
            yield from conditions(item)
        else:
            yield item


def fields_used(rules: dict) -> set[str]:
    return {c["field"] for c in conditions(rules)}


def numbers_compared(rules: dict, field_name: str) -> set[int]:
    """The integer values `field_name` is compared with anywhere in validated rules."""
    out: set[int] = set()
    for c in conditions(rules):
        if c["field"] != field_name or c.get("value") is None:
            continue
        values = c["value"] if isinstance(c["value"], list) else [c["value"]]
        out.update(int(v) for v in values)
    return out
