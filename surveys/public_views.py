"""The customer-facing survey pages behind personal links. No login.

/s/<token>/ keeps the token's hash in a signed cookie and redirects to the token-free
/s/answer/ (like Django's password reset), so the token never reaches a Referer header or a log
of the answer page. GET never spends a link; POST saves a draft or finishes the response. Every
page sends Cache-Control: no-store and Referrer-Policy: no-referrer and reveals at most the
customer's first name.

Why a signed cookie and not the session: customers never log in, and the only thing the flow
remembers is which link was opened. A database session would cost a session row INSERT per
opened link and a session SELECT on every later survey request; the signed cookie costs an
HMAC. It is signed with SECRET_KEY (and a salt of its own) and timestamped, so it cannot be
forged or kept alive past LINK_COOKIE_MAX_AGE; it is HttpOnly, Secure like the session cookie,
SameSite=Lax, and only sent to /s/. It carries the token's hash, never the token, and the
database still decides on every request whether the link is valid, expired or answered. Staff
sessions are untouched (no settings change).
"""

from functools import wraps

from django.conf import settings
from django.core import signing
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from . import public_selectors, selectors, services, tokens
from .answers import answers_parse, draft_to_raw, field_name
from .models import CHOICE_KINDS, ResponseDraft
from .ratelimit import rate_limit_exceeded

LINK_COOKIE = "survey_link"
LINK_COOKIE_SALT = "surveys.public_views.link"
LINK_COOKIE_PATH = "/s/"
LINK_COOKIE_MAX_AGE = 14 * 24 * 3600  # like Django's default session age


def _remember_link(response, digest: str) -> None:
    response.set_signed_cookie(
        LINK_COOKIE,
        digest,
        salt=LINK_COOKIE_SALT,
        max_age=LINK_COOKIE_MAX_AGE,
        path=LINK_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def _remembered_link(request) -> str:
    """The opened link's hash, or "" when there is none or the cookie was tampered with."""
    try:
        return request.get_signed_cookie(
            LINK_COOKIE, default="", salt=LINK_COOKIE_SALT, max_age=LINK_COOKIE_MAX_AGE
        )
    except signing.BadSignature:
        return ""


def public_page(view):
    """Rate limit per IP, then mark the response private and referrer-free."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if rate_limit_exceeded(request):
            response = render(request, "public/rate_limited.html", status=429)
            response["Retry-After"] = "60"
        else:
            response = view(request, *args, **kwargs)
        add_never_cache_headers(response)  # Cache-Control: max-age=0, no-cache, no-store, ...
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex"
        return response

    return wrapper


def _page(request, template, status, invitation=None, **context):
    language = invitation.customer.preferred_language if invitation else None
    with translation.override(language or translation.get_language()):
        response = render(request, template, context, status=status)
        response["Content-Language"] = translation.get_language()
    return response


def _invalid(request):
    return _page(request, "public/link_invalid.html", 404)


@public_page
@require_GET
def open_link(request, token: str):
    if not tokens.token_is_well_formed(token):
        return _invalid(request)
    digest = tokens.token_hash(token)
    invitation = selectors.invitation_for_hash(digest)
    if invitation is None:
        return _invalid(request)
    services.invitation_mark_opened(invitation=invitation)
    response = HttpResponseRedirect(reverse("surveys:public_answer"))
    _remember_link(response, digest)
    return response


def question_rows(questions, raw, errors):
    rows = []
    for q in questions:
        name = field_name(q.id)
        if q.kind in CHOICE_KINDS:
            choices = q.localized_options
        else:
            choices = [(str(v), str(v)) for v in q.scale_values]
        rows.append(
            {
                "q": q,
                "name": name,
                "choices": choices,
                "selected": set(raw.get(name, [])),
                "text": (raw.get(name) or [""])[0],
                "error": errors.get(q.id),
                "input": "checkbox" if q.kind == "multiple" else "radio",
            }
        )
    return rows


@public_page
@csrf_protect
@require_http_methods(["GET", "POST"])
def answer(request):
    invitation, questions = public_selectors.invitation_with_questions(_remembered_link(request))
    if invitation is None:
        return _invalid(request)
    campaign = invitation.campaign
    if campaign.is_expired:
        return _page(request, "public/link_expired.html", 410, invitation)
    if invitation.answered:
        status = 409 if request.method == "POST" else 200
        return _page(request, "public/already_answered.html", status, invitation)

    language = invitation.customer.preferred_language
    status, saved, errors = 200, False, {}
    if request.method == "POST":
        raw = {field_name(q.id): request.POST.getlist(field_name(q.id)) for q in questions}
        finishing = request.POST.get("action", "submit") != "save"
        parsed = answers_parse(questions, raw, require_all=finishing)
        errors = parsed.errors
        if errors:
            status = 400
        else:
            try:
                if finishing:
                    services.response_submit(
                        invitation=invitation,
                        questions=questions,
                        values=parsed.values,
                        language=language,
                    )
                else:
                    services.response_draft_save(invitation=invitation, values=parsed.values)
                    saved = True
            except services.AlreadyAnswered:
                return _page(request, "public/already_answered.html", 409, invitation)
            except services.LinkExpired:
                return _page(request, "public/link_expired.html", 410, invitation)
            if finishing:
                # The cookie stays: a reload shows "already answered" (the database decides).
                return _page(
                    request,
                    "public/thanks.html",
                    200,
                    invitation,
                    coupon_code=campaign.coupon_code,
                    first_name=invitation.customer.first_name,
                )
    else:
        # The lookup already says whether a draft exists: no query for the usual first visit.
        draft = (
            ResponseDraft.objects.filter(invitation=invitation).first()
            if invitation.has_draft
            else None
        )
        raw = draft_to_raw(draft.data) if draft else {}

    with translation.override(language):
        return _page(
            request,
            "public/survey_answer.html",
            status,
            invitation,
            survey=campaign.survey,
            rows=question_rows(questions, raw, errors),
            has_errors=bool(errors),
            saved=saved,
            first_name=invitation.customer.first_name,
            expires_at=campaign.expires_at,
        )
