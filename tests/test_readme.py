"""The README stands on its own: every file it names is in the repository
(it once cited sections of a DOMAIN.md that is not)."""

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
