"""What a newcomer meets first: a README that stands on its own (every file
it names is in the repository; it once cited a DOMAIN.md that is not), and
the site's icon where browsers look for it."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# File names with an extension that a reader would go and open.
NAMED_FILE = re.compile(r"\b[\w./-]+\.(?:md|py|html|js|css|toml|txt|png|svg|sh)\b")


def test_every_file_the_readme_names_is_in_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {name for name in NAMED_FILE.findall(text) if "/" in name or name.endswith(".md")}
    missing = sorted(n for n in names if not list(ROOT.glob(f"**/{n.lstrip('./')}")))
    assert "DOMAIN.md" not in text
    assert missing == []


def test_the_favicon_is_found_where_browsers_ask_for_it(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith("img/favicon.svg")
    assert (ROOT / "static/img/favicon.svg").read_text().lstrip().startswith("<svg")


def test_the_suite_writes_nothing_in_the_checkout(settings):
    """Its SQLite files, broker, heartbeats and static files go to a
    temporary folder (config/settings_test.py), inherited by the workers
    and servers the tests start."""
    written = [Path(settings.VAR_DIR), Path(settings.STATIC_ROOT), Path(settings.IMPORTS_DIR)]
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        written.append(Path(settings.DATABASES["default"]["NAME"]))
    assert not [path for path in written if path.resolve().is_relative_to(settings.BASE_DIR)]
    assert os.environ["VAR_DIR"] == str(settings.VAR_DIR)
