"""Settings come from the environment; a production start without a SECRET_KEY stops clearly."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}
    }
    clean.update(env)
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_start_without_secret_key_stops_with_a_clear_message():
    result = _manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_bad_boolean_is_refused_with_the_variable_name():
    result = _manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


def test_sqlite_is_the_embedded_default_and_postgres_url_is_honoured(tmp_path):
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    sqlite = _manage("shell", "-c", code, DEBUG="1", CRM_VAR_DIR=str(tmp_path))
    assert sqlite.stdout.strip().splitlines()[-1] == "django.db.backends.sqlite3"
    pg = _manage("shell", "-c", code, DEBUG="1", DATABASE_URL="postgres://u@127.0.0.1:5/x")
    assert pg.stdout.strip().splitlines()[-1] == "django.db.backends.postgresql"


def test_bad_margin_rate_is_refused():
    result = _manage("check", DEBUG="1", DEFAULT_MARGIN_RATE="1.5")
    assert result.returncode != 0
    assert "DEFAULT_MARGIN_RATE" in result.stderr
