"""The words of a report that comes only as HTML (some appliances and
hosted gateways write their delivery reports so): its text as a reader
sees it, for the same sentences a plain report is read for.

Hand-written, in one pass of linear steps, because anyone can send a
report: the stdlib's HTMLParser rescans an unclosed tag at every step
(100 KB of "<a " took 74 s of CPU), and no HTML library is in the stack.
A report's words are at its start: the first LIMIT characters are read."""

import html
import re
import string

LIMIT = 200_000
# Elements whose content is not shown: a report's style or script may
# quote any address (a gateway's tracking code, a stylesheet's content).
# A name ends at a space, "/" or ">": "<title-bar>" is a custom element, shown.
HIDDEN = ("script", "style", "head", "title", "template", "noscript")
HIDDEN_RE = re.compile(rf"<!--|<({'|'.join(HIDDEN)})(?=[\s/>])")
CLOSERS = {name: re.compile(rf"</{name}(?=[\s/>])") for name in HIDDEN}
# Tag names are ASCII, and so is their case: str.lower() would make "İ" two
# characters, and a position found in the lower-cased page would cut the
# page itself elsewhere (showing a style's words, cutting the recipient).
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
COMMENT_END_RE = re.compile("--!?>")
# Elements that begin a new line in the page, as the report's words run;
# a table's cells stay on their row's line, apart.
BLOCKS = frozenset(
    {"address", "blockquote", "br", "dd", "div", "dl", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
     "ol", "p", "pre", "table", "tbody", "thead", "tr", "ul"}
)  # fmt: skip
CELLS = frozenset({"td", "th"})
# A tag, or a declaration or processing instruction: never across another
# "<", so a "<" that opens nothing is read past in one step.
# Possessive: a name never closed ("<aaaa...") is not tried again at every
# shorter length (quadratic: the LIMIT's 200 KB took 45 s).
TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*+)[^<>]*+>|<[!?/][^<>]*+>")


def html_text(page: str) -> str:
    """The text a reader of `page` sees: hidden elements and comments left
    out, tags made line breaks or spaces, entities decoded, each line's
    spaces made one."""
    shown = _shown(page[:LIMIT])
    text = html.unescape(TAG_RE.sub(_tag, shown))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _shown(page: str) -> str:
    """`page` without its comments and hidden elements; one left open
    hides the rest."""
    lower, pieces, at = page.translate(ASCII_LOWER), [], 0
    while found := HIDDEN_RE.search(lower, at):
        pieces.append(page[at : found.start()])
        if (end := _end(lower, found)) < 0:
            return " ".join(pieces)
        at = end
        pieces.append(" ")
    pieces.append(page[at:])
    return "".join(pieces)


def _end(lower: str, found: re.Match) -> int:
    """Where the comment or hidden element `found` ends, or -1. A comment
    ends at "-->" or "--!>", and "<!-->" and "<!--->" are whole (empty)
    ones, as browsers read them: searched from its "--"."""
    if found.group(1) is None:
        close = COMMENT_END_RE.search(lower, found.start() + 2)
        return -1 if close is None else close.end()
    close = CLOSERS[found.group(1)].search(lower, found.end())
    return -1 if close is None else _after_tag(lower, close.start())


def _after_tag(lower: str, start: int) -> int:
    end = lower.find(">", start)
    return len(lower) if end < 0 else end + 1


def _tag(found: re.Match) -> str:
    name = (found.group(2) or "").lower()
    if name in CELLS:
        return " "
    return "\n" if name in BLOCKS else ""
