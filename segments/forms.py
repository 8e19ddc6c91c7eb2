"""The bucket form and the rule editor's rows.

The editor posts flat fields: rules-op (top group and/or), rules-groups (number of nested
groups), rules-gop-<n> (each nested group's and/or), rules-rows (number of rows) and for each
row row-<i>-group (0 = top level, n = nested group n), row-<i>-field, row-<i>-operator,
row-<i>-value ("in", "not in" and "between" take comma-separated values). With rules-mode =
"json" the JSON in rules-json is used instead (for trees nested deeper than the rows allow).
Parsing here only shapes input; segments.rules.validate decides what is valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import rules as rules_mod

MAX_ROWS = 100
MAX_GROUPS = 20
LIST_OPERATORS = ("in", "not in", "between")


class BucketForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    persona = forms.CharField(
        label=gettext_lazy("Persona"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("Who these customers are and how to serve them."),
    )
    colour = forms.RegexField(
        label=gettext_lazy("Colour"),
        regex=r"^#[0-9a-fA-F]{6}$",
        initial="#1f77b4",
        widget=forms.TextInput(attrs={"type": "color"}),
        error_messages={"invalid": gettext_lazy("Enter a colour as #rrggbb.")},
    )
    priority = forms.IntegerField(
        label=gettext_lazy("Priority"),
        min_value=1,
        max_value=1_000_000,
        help_text=gettext_lazy("Lower numbers are evaluated first."),
    )
    active = forms.BooleanField(label=gettext_lazy("Active"), required=False, initial=True)


@dataclass
class Row:
    group: int = 0
    field: str = "effort"
    operator: str = "="
    value: str = ""
    path: str = ""

    @property
    def spec(self):
        return rules_mod.FIELDS.get(self.field)

    @property
    def operators(self):
        spec = self.spec
        return spec.operators if spec else rules_mod.OPERATORS


@dataclass
class EditorState:
    op: str = "and"
    group_ops: list[str] = field(default_factory=list)  # index n-1 for nested group n
    rows: list[Row] = field(default_factory=lambda: [Row()])
    mode: str = "rows"
    json_text: str = ""
    errors: list[str] = field(default_factory=list)

    def groups(self):
        """[(number, op, [(index, row)])] for the top level (0) and each nested group; index is
        the row's position in the posted form (row-<index>-...)."""
        indexed = list(enumerate(self.rows))
        return [
            (
                n,
                self.op if n == 0 else self.group_ops[n - 1],
                [p for p in indexed if p[1].group == n],
            )
            for n in range(len(self.group_ops) + 1)
        ]


def _value_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value)
    return str(value)


def _int(data, key, default=0, low=0, high=MAX_ROWS) -> int:
    try:
        return max(low, min(high, int(data.get(key, default))))
    except (TypeError, ValueError):
        return default


def state_from_rules(rules) -> EditorState:
    """Rows for an existing rule tree; trees nested deeper than one level use JSON mode."""
    state = EditorState(rows=[], json_text=json.dumps(rules, indent=2, ensure_ascii=False))
    if not isinstance(rules, dict) or not rules.get("conditions"):
        state.rows = [Row()]
        return state
    state.op = rules.get("op", "and")
    for item in rules["conditions"]:
        if isinstance(item, dict) and "conditions" in item:
            state.group_ops.append(item.get("op", "and"))
            number = len(state.group_ops)
            for sub in item.get("conditions", []):
                if not isinstance(sub, dict) or "conditions" in sub:
                    state.mode = "json"
                    continue
                state.rows.append(_row_from_condition(sub, number))
        elif isinstance(item, dict):
            state.rows.append(_row_from_condition(item, 0))
    state_number_paths(state)
    return state


def _row_from_condition(condition: dict, group: int) -> Row:
    return Row(
        group=group,
        field=str(condition.get("field", "")),
        operator=str(condition.get("operator", "=")),
        value=_value_text(condition.get("value")),
    )


def state_from_post(data) -> EditorState:
    """The editor's rows as posted (never raises)."""
    mode = "json" if data.get("rules-mode") == "json" else "rows"
    state = EditorState(
        op=data.get("rules-op") if data.get("rules-op") in ("and", "or") else "and",
        rows=[],
        mode=mode,
        json_text=data.get("rules-json", "")[:100_000],
    )
    group_count = _int(data, "rules-groups", high=MAX_GROUPS)
    for n in range(1, group_count + 1):
        gop = data.get(f"rules-gop-{n}")
        state.group_ops.append(gop if gop in ("and", "or") else "and")
    for i in range(_int(data, "rules-rows")):
        if f"row-{i}-field" not in data:
            continue
        state.rows.append(
            Row(
                group=_int(data, f"row-{i}-group", high=group_count),
                field=data.get(f"row-{i}-field", "")[:50],
                operator=data.get(f"row-{i}-operator", "")[:20],
                value=data.get(f"row-{i}-value", "")[:2000],
            )
        )
    return state


def apply_action(state: EditorState, action: str) -> EditorState:
    """Add or remove a row or a group (the htmx buttons and their plain-POST fallback)."""
    if action == "add_row" and len(state.rows) < MAX_ROWS:
        state.rows.append(Row())
    elif action.startswith("add_row_to-") and len(state.rows) < MAX_ROWS:
        group = _int({"g": action.split("-", 1)[1]}, "g", high=len(state.group_ops))
        state.rows.append(Row(group=group))
    elif action == "add_group" and len(state.group_ops) < MAX_GROUPS:
        state.group_ops.append("or")
        state.rows.append(Row(group=len(state.group_ops)))
    elif action.startswith("remove_row-"):
        index = _int({"i": action.split("-", 1)[1]}, "i", default=-1, low=-1)
        if 0 <= index < len(state.rows):
            del state.rows[index]
    state_number_paths(state)
    return state


def state_number_paths(state: EditorState) -> None:
    """Drop empty nested groups and give each row the path that validation messages use."""
    used = sorted({r.group for r in state.rows if r.group})
    renumber = {old: new for new, old in enumerate(used, start=1)}
    state.group_ops = [state.group_ops[old - 1] for old in used]
    for row in state.rows:
        row.group = renumber.get(row.group, 0)
    top = [r for r in state.rows if r.group == 0]
    for i, row in enumerate(top, start=1):
        row.path = str(i)
    for n in range(1, len(state.group_ops) + 1):
        for j, row in enumerate((r for r in state.rows if r.group == n), start=1):
            row.path = f"{len(top) + n}.{j}"


def _posted_value(row: Row):
    if row.operator == "is empty":
        return None
    if row.operator in LIST_OPERATORS:
        return [part.strip() for part in row.value.split(",") if part.strip()]
    return row.value


def rules_from_state(state: EditorState):
    """The rule JSON for the posted editor (unvalidated). JSON mode returns the parsed JSON,
    or raises ValueError with a message when it does not parse."""
    if state.mode == "json":
        try:
            return json.loads(state.json_text)
        except json.JSONDecodeError as exc:
            raise ValueError(_("Rules JSON does not parse: %(error)s") % {"error": exc})
        except RecursionError:
            raise ValueError(_("Rules JSON is nested too deeply."))
    state_number_paths(state)

    def condition(row: Row) -> dict:
        out = {"field": row.field, "operator": row.operator}
        value = _posted_value(row)
        if value is not None:
            out["value"] = value
        return out

    items: list = [condition(r) for r in state.rows if r.group == 0]
    for n, gop in enumerate(state.group_ops, start=1):
        sub = [condition(r) for r in state.rows if r.group == n]
        if sub:
            items.append({"op": gop, "conditions": sub})
    return {"op": state.op, "conditions": items}
