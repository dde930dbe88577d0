"""Folder names as IMAP sends them: in modified UTF-7 (RFC 3501, 5.1.3),
the only form a server without UTF8=ACCEPT knows ("Входящие" is
&BBIERQQ+BDQETwRJBDgENQ-), and every server takes; quoted, as a command's
argument."""

import base64
import re

# A name already in modified UTF-7, as a mail program shows it: "&-" or
# "&<base64>-" runs in otherwise printable ASCII.
_ENCODED_RE = re.compile(r"(?:[\x20-\x25\x27-\x7e]|&-|&[A-Za-z0-9+,]+-)*")


def wire_name(folder: str) -> str:
    """`folder` in modified UTF-7; a name typed in that form already is
    kept as it is."""
    if _ENCODED_RE.fullmatch(folder) and _decodes(folder):
        return folder
    out, run = [], []
    for char in folder:
        if "\x20" <= char <= "\x7e":
            out.append(_shifted(run) + ("&-" if char == "&" else char))
            run = []
        else:
            run.append(char)
    out.append(_shifted(run))
    return "".join(out)


def quoted(folder: str) -> str:
    name = wire_name(folder)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shifted(chars: list[str]) -> str:
    if not chars:
        return ""
    encoded = base64.b64encode("".join(chars).encode("utf-16-be")).decode().rstrip("=")
    return "&" + encoded.replace("/", ",") + "-"


def _decodes(name: str) -> bool:
    for run in re.findall(r"&([A-Za-z0-9+,]+)-", name):
        padded = run.replace(",", "/") + "=" * (-len(run) % 4)
        try:
            base64.b64decode(padded, validate=True).decode("utf-16-be")
        except ValueError:
            return False
    return True
