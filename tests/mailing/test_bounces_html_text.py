"""The HTML reader of bounce reports (mailing.bounces.html_text), on its
own: anyone can send a report, so hostile pages neither move what it reads
nor cost it more than linear time."""

import time

from mailing.bounces.html_text import LIMIT, html_text

REAL = "<p>550 5.1.1 &lt;jane@example.org&gt;: User unknown</p>"


def test_a_letter_longer_in_lower_case_moves_no_hidden_element():
    """'İ'.lower() is two characters: positions found in the lower-cased
    page cut the page itself elsewhere, showing the style's words and
    cutting the real recipient."""
    page = "İ" * 60 + "<style>.a { content: 'fake@evil.test' }</style>" + REAL
    text = html_text(page)
    assert "fake@evil.test" not in text
    assert "550 5.1.1 <jane@example.org>: User unknown" in text


def test_one_long_unclosed_tag_name_is_read_in_linear_time():
    """A tag name never closed ("<aaaa...") was backtracked over at every
    length: 40 KB took two seconds of CPU, the LIMIT's 200 KB a minute."""
    started = time.process_time()
    html_text(REAL + "<" + "a" * LIMIT)
    assert time.process_time() - started < 1


def test_an_empty_comment_hides_nothing_after_it():
    """An empty comment ("<!-->", "<!--->") is whole to a browser, and "--!>"
    ends one: the rest of the page was taken for the comment's."""
    for comment in ["<!-->", "<!--->", "<!-- x --!>"]:
        assert "jane@example.org" in html_text(f"<p>Delivery failed</p>{comment}{REAL}")
    assert html_text("<!-- <p>fake@evil.test</p> -->" + REAL) == "550 5.1.1 <jane@example.org>: User unknown"


def test_a_custom_element_named_like_a_hidden_one_hides_nothing():
    """A custom element ("<title-bar>", "<style-note>") is one of its own
    to a browser, and shown; the hyphen ended the name for the reader,
    which took it for a title or a style and hid what it holds."""
    for tag in ["title-bar", "style-note"]:
        assert "jane@example.org" in html_text(f"<{tag}>{REAL}</{tag}>")
    assert "fake" not in html_text("<style\n>fake@evil.test</style><script/>fake</script>" + REAL)
