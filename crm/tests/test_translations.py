"""Korean ships complete: all translated, nothing fuzzy, the .mo compiled, pages render."""

import re
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.utils import translation

PO_PATH = Path(settings.BASE_DIR) / "locale" / "ko" / "LC_MESSAGES" / "django.po"
MO_PATH = PO_PATH.with_suffix(".mo")

# python-format placeholders (%(name)s, %s, %d, %%) and str.format fields ({name}).
PLACEHOLDER = re.compile(r"%\([^)]+\)[-#0 +]*\d*(?:\.\d+)?[sdifr]|%[sdif]|%%|\{[a-z_0-9]*\}")


@pytest.fixture(scope="module")
def po():
    return polib.pofile(str(PO_PATH))


def _live(po):
    return [e for e in po if not e.obsolete]


def _first(entries, n=10):
    return "\n".join(repr(e.msgid) for e in entries[:n])


def test_korean_catalog_exists_and_declares_one_plural_form(po):
    assert len(_live(po)) > 100
    assert po.metadata.get("Language") == "ko"
    assert po.metadata.get("Plural-Forms", "").replace(" ", "") == "nplurals=1;plural=0;"
    assert not po.metadata_is_fuzzy


def test_no_untranslated_entries(po):
    missing = [e for e in _live(po) if not e.translated() and "fuzzy" not in e.flags]
    assert not missing, f"{len(missing)} untranslated entries, first:\n{_first(missing)}"


def test_no_fuzzy_entries(po):
    fuzzy = [e for e in _live(po) if "fuzzy" in e.flags]
    assert not fuzzy, f"{len(fuzzy)} fuzzy entries, first:\n{_first(fuzzy)}"


def test_plural_entries_fill_the_single_korean_form(po):
    bad = [e for e in _live(po) if e.msgid_plural and not e.msgstr_plural.get(0)]
    assert not bad, f"plural entries without msgstr[0]:\n{_first(bad)}"


def test_placeholders_are_kept(po):
    bad = []
    for e in _live(po):
        if "python-format" not in e.flags and "python-brace-format" not in e.flags:
            continue
        source = e.msgid_plural or e.msgid
        targets = list(e.msgstr_plural.values()) if e.msgid_plural else [e.msgstr]
        want = set(PLACEHOLDER.findall(source))
        if any(set(PLACEHOLDER.findall(t)) != want for t in targets if t):
            bad.append(e)
    assert not bad, f"{len(bad)} entries change their placeholders:\n{_first(bad)}"


def test_mo_is_compiled_from_the_current_po(po):
    assert MO_PATH.exists(), "run compilemessages -l ko"
    # Not older than the .po (two seconds of slack for checkouts that write both at once) ...
    assert MO_PATH.stat().st_mtime >= PO_PATH.stat().st_mtime - 2, "django.mo is older than .po"
    # ... and really holding the .po's translations.
    mo = {(e.msgctxt, e.msgid): e for e in polib.mofile(str(MO_PATH))}
    stale = []
    for e in _live(po):
        m = mo.get((e.msgctxt, e.msgid))
        if m is None:
            stale.append(e)
        elif e.msgid_plural:
            if m.msgstr_plural.get(0) != e.msgstr_plural.get(0):
                stale.append(e)
        elif m.msgstr != e.msgstr:
            stale.append(e)
    assert not stale, f"{len(stale)} entries differ in django.mo, first:\n{_first(stale)}"


def test_gettext_uses_the_korean_catalog():
    with translation.override("ko"):
        assert translation.gettext("Customers") == "고객"
        assert translation.ngettext("%(n)s member", "%(n)s members", 3) % {"n": 3} == "구성원 3명"
    with translation.override("en"):
        assert translation.gettext("Customers") == "Customers"


@pytest.mark.django_db
def test_staff_page_renders_in_korean_with_the_language_cookie(client_support):
    client_support.cookies[settings.LANGUAGE_COOKIE_NAME] = "ko"
    response = client_support.get("/my/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="ko">' in html
    assert "내 업무" in html  # "My work"
    assert "로그아웃" in html  # "Log out"
    assert "Log out" not in html


@pytest.mark.django_db
def test_staff_page_renders_in_korean_with_accept_language(client_support):
    response = client_support.get("/my/", headers={"accept-language": "ko-KR,ko;q=0.9"})
    assert response.status_code == 200
    assert "내 업무" in response.content.decode()


@pytest.mark.django_db
def test_set_language_view_switches_a_staff_session_to_korean_and_back(client_support):
    response = client_support.post("/i18n/setlang/", {"language": "ko", "next": "/my/"})
    assert response.status_code == 302
    assert "내 업무" in client_support.get("/my/").content.decode()
    client_support.post("/i18n/setlang/", {"language": "en", "next": "/my/"})
    html = client_support.get("/my/").content.decode()
    assert "My work" in html
    assert "내 업무" not in html
