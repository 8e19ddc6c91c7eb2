"""Validation of submitted answers: pure, no ORM. Shared by the public form and the draft saver.

Input: the questions (any objects with id, kind, required, scale, options) and the raw POST
values as a mapping "q<id>" -> list of strings. Output: clean values keyed by question id
(int for scales, str for single choice and free text, list[str] for multiple choice) and
errors keyed by question id. Skipped (empty) answers are simply absent.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from .models import MAX_TEXT_ANSWER, QuestionKind


@dataclass
class ParsedAnswers:
    values: dict[int, object] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def field_name(question_id: int) -> str:
    return f"q{question_id}"


def answers_parse(
    questions: Iterable, raw: Mapping[str, list[str]], *, require_all: bool
) -> ParsedAnswers:
    """Validate every question's raw value. `require_all` enforces required questions (the
    finishing submit); a draft save only checks the values that were given."""
    parsed = ParsedAnswers()
    for q in questions:
        values = [v for v in raw.get(field_name(q.id), []) if str(v).strip() != ""]
        if not values:
            if require_all and q.required:
                parsed.errors[q.id] = _("This question needs an answer.")
            continue
        error, value = _parse_one(q, values)
        if error:
            parsed.errors[q.id] = error
        else:
            parsed.values[q.id] = value
    return parsed


def _parse_one(q, values: list[str]) -> tuple[str | None, object]:
    if q.kind == QuestionKind.TEXT:
        text = values[0].strip()
        if len(values) > 1:
            return _("Send one text per question."), None
        if "\x00" in text:  # PostgreSQL text and jsonb cannot store it (was a 500)
            return _("Null characters are not allowed."), None
        if len(text) > MAX_TEXT_ANSWER:
            return (
                _("Please keep your answer under %(max)d characters (it has %(n)d).")
                % {"max": MAX_TEXT_ANSWER, "n": len(text)},
                None,
            )
        return None, text
    if q.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE):
        known = {str(o["value"]) for o in q.options}
        unknown = [v for v in values if v not in known]
        if unknown:
            return _("Please choose one of the options shown."), None
        if q.kind == QuestionKind.SINGLE:
            if len(values) > 1:
                return _("Please choose only one option."), None
            return None, values[0]
        return None, sorted(set(values), key=values.index)
    # Scaled kinds: NPS, CSAT, CES, rating.
    if len(values) > 1:
        return _("Please choose only one value."), None
    try:
        number = int(values[0])
    except (TypeError, ValueError):
        return _("Please choose a value on the scale."), None
    low, high = q.scale
    if not low <= number <= high:
        return (
            _("Please choose a value from %(low)d to %(high)d.") % {"low": low, "high": high},
            None,
        )
    return None, number


def draft_to_raw(data: Mapping[str, object]) -> dict[str, list[str]]:
    """A saved draft ({"<question id>": value}) in the raw shape the form renders."""
    raw: dict[str, list[str]] = {}
    for key, value in data.items():
        items = value if isinstance(value, list) else [value]
        raw[field_name(int(key))] = [str(v) for v in items]
    return raw
