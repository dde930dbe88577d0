"""The restricted placeholder engine: plain names substituted, HTML escaped,
and everything else refused with its position."""

import json
import random
from contextlib import nullcontext
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailing.models import Contact, CustomField
from mailing.rendering import RenderError, _tokens, check, contact_context, known_names, render

KNOWN = {"email", "first_name", "last_name", "unsubscribe_url", "company"}
CONTEXT = {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee", "company": "Initech"}


def test_it_substitutes_placeholders_with_or_without_spaces():
    source = "Hi {{ first_name }} {{last_name}}, {{  company\t}} <{{email}}>"
    assert check(source, known=KNOWN) == []
    assert render(source, CONTEXT, html=False) == "Hi Ann Lee, Initech <ann@example.com>"


@pytest.mark.parametrize("space", ["\xa0", "\u202f", "\u3000", "\u2009"])
def test_a_placeholder_pasted_with_a_no_break_or_other_space_is_a_placeholder(space):
    """Word and Google Docs paste "{{ first_name }}" with no-break spaces:
    it looks the same, and was refused as an invalid name it showed right."""
    source = f"Hi {{{{{space}first_name{space}}}}}, {{{{ company{space}}}}}"
    assert check(source, known=KNOWN) == []
    assert render(source, CONTEXT, html=False) == "Hi Ann, Initech"
    assert check(f"{{{{{space}city }}}}", known=KNOWN)[0].startswith("Unknown placeholder {{ city }}")


def test_text_without_placeholders_is_left_alone():
    source = "Prices from 10 } to 20 }} and 100% off; a { brace"
    assert check(source, known=KNOWN) == []
    assert render(source, CONTEXT, html=True) == source


def test_html_values_are_escaped_and_text_values_are_not():
    context = {**CONTEXT, "first_name": '<script>alert("x")</script>'}
    html = render("<p>Hi {{ first_name }}</p>", context, html=True)
    assert html == "<p>Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</p>"
    assert render("Hi {{ first_name }}", context, html=False) == 'Hi <script>alert("x")</script>'


def test_the_unsubscribe_url_is_escaped_in_html_too():
    context = {**CONTEXT, "unsubscribe_url": 'https://x.test/u/a?b=1&c="2"'}
    html = render('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', context, html=True)
    assert html == '<a href="https://x.test/u/a?b=1&amp;c=&quot;2&quot;">Unsubscribe</a>'


URL_CONTEXT = {
    **CONTEXT,
    "email": "ann+news@example.com",
    "company": "AT&T Россия #1",
    "site": "https://a.example",
    "path": "sale/shoes?size=42",
}


@pytest.mark.parametrize(
    ("source", "html", "expected"),
    [
        # In a link's query, path or fragment: percent-encoded, so that a
        # "+" stays a plus, an "&" or "#" does not end the value, and
        # Cyrillic goes as UTF-8.
        (
            '<a href="https://shop.example/t?e={{ email }}&c={{company}}">x</a>',
            True,
            '<a href="https://shop.example/t?e=ann%2Bnews@example.com&c=AT%26T%20%D0%A0%D0%BE%D1%81%D1%81%D0%B8%D1%8F%20%231">x</a>',
        ),
        # In a path, a value may be a piece of link: only what a link cannot hold is encoded.
        ("<a href='{{ site }}/u/{{ email }}'>", True, "<a href='https://a.example/u/ann+news@example.com'>"),
        ('<a href="https://shop.example/{{ path }}">', True, '<a href="https://shop.example/sale/shoes?size=42">'),
        (
            '<img src="https://x.example/p.gif?e={{ email }}">',
            True,
            '<img src="https://x.example/p.gif?e=ann%2Bnews@example.com">',
        ),
        (
            "Track: https://shop.example/t?e={{ email }} now",
            False,
            "Track: https://shop.example/t?e=ann%2Bnews@example.com now",
        ),
        (
            "(https://shop.example/{{ company }})",
            False,
            "(https://shop.example/AT&T%20%D0%A0%D0%BE%D1%81%D1%81%D0%B8%D1%8F%20#1)",
        ),
        (
            '<a href="mailto:sales@x.example?subject={{ company }}">',
            True,
            '<a href="mailto:sales@x.example?subject=AT%26T%20%D0%A0%D0%BE%D1%81%D1%81%D0%B8%D1%8F%20%231">',
        ),
        # A whole link, a host, a mailto address or plain words: as they are.
        ('<a href="{{ site }}">', True, '<a href="https://a.example">'),
        ('<a href="mailto:{{ email }}">', True, '<a href="mailto:ann+news@example.com">'),
        ("https://{{ first_name }}.example/", False, "https://Ann.example/"),
        (
            "Hi {{ first_name }}, see https://x.example/ and {{ email }}",
            False,
            "Hi Ann, see https://x.example/ and ann+news@example.com",
        ),
        ("<p>{{ company }}</p>", True, "<p>AT&amp;T Россия #1</p>"),
        (
            '<a title="a/b?{{ company }}" href="https://x.example/">',
            True,
            '<a title="a/b?AT&amp;T Россия #1" href="https://x.example/">',
        ),
    ],
)
def test_a_placeholder_inside_a_link_after_its_host_is_percent_encoded(source, html, expected):
    """A tracking link `?e={{ email }}` with ann+news@example.com arrived as
    "ann news@example.com" (a "+" in a query is a space), and a value with
    "&" or "#" cut the link short."""
    assert render(source, URL_CONTEXT, html=html) == expected


@pytest.mark.django_db
def test_custom_fields_are_known_and_a_missing_value_is_empty(tenant_a, tenant_b):
    CustomField.objects.create(tenant=tenant_a, key="company", label="Company")
    CustomField.objects.create(tenant=tenant_b, key="shoe_size", label="Shoe size")
    known = known_names(tenant_a)
    assert known == {"email", "first_name", "last_name", "unsubscribe_url", "company"}
    source = "{{ first_name }} at {{ company }}"
    assert check(source, known=known) == []
    assert "Unknown placeholder {{ shoe_size }}" in check("{{ shoe_size }}", known=known)[0]

    with_value = Contact(tenant=tenant_a, email="a@x.test", first_name="Ann", fields={"company": "Initech", "n": 3})
    without = Contact(tenant=tenant_a, email="b@x.test", first_name="Bob", fields={})
    assert render(source, contact_context(with_value, unsubscribe_url="u"), html=False) == "Ann at Initech"
    assert render(source, contact_context(without, unsubscribe_url="u"), html=False) == "Bob at "


def test_the_contact_context_holds_strings_and_standard_names_win():
    contact = Contact(email="a@x.test", first_name="Ann", last_name="", fields={"email": "evil@x.test", "n": 3})
    context = contact_context(contact, unsubscribe_url="https://x.test/u/t/")
    assert context == {
        "email": "a@x.test",
        "first_name": "Ann",
        "last_name": "",
        "n": "3",
        "unsubscribe_url": "https://x.test/u/t/",
    }


UNKNOWN = "Unknown placeholder {{ compnay }} at line 1, column 1 — known: first_name, last_name, email, company, "


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% load i18n %}{% trans 'x' %}", "Template tags such as {% load i18n %} are not allowed (line 1, column 1)"),
        ("Hi{% if email %}!{% endif %}", "Template tags such as {% if email %} are not allowed (line 1, column 3)"),
        ("{{ contact.email }}", "Attribute lookups are not allowed: {{ contact.email }} at line 1, column 1"),
        ("x\n {{ email.__class__ }}", "Attribute lookups are not allowed: {{ email.__class__ }} at line 2, column 2"),
        ("{{ first_name|upper }}", "Filters are not allowed: {{ first_name|upper }} at line 1, column 1"),
        ("{{ compnay }}", UNKNOWN + "unsubscribe_url."),
        ("Hello {{ first_name", "Unclosed placeholder {{ at line 1, column 7: add the closing }}."),
        ("{# note #}", "Template comments {# … #} are not allowed (line 1, column 1)"),
        ("{{ }}", "Empty placeholder {{ }} at line 1, column 1"),
        ("{{ First_Name }}", "Invalid placeholder {{ First_Name }} at line 1, column 1"),
        ("{{ email() }}", "Invalid placeholder {{ email() }} at line 1, column 1"),
    ],
)
def test_anything_but_a_known_plain_name_is_refused_with_its_position(source, expected):
    errors = check(source, known=KNOWN)
    assert errors and errors[0].startswith(expected), errors
    # An unknown name is a save-time error only: at send time it renders
    # empty (a custom field removed after the template was saved).
    with nullcontext() if "Unknown" in expected else pytest.raises(RenderError):
        render(source, CONTEXT, html=False)


def test_an_unclosed_placeholder_does_not_hide_the_next_problem():
    errors = check("Hello {{ first_name, see {{ compnay }}", known=KNOWN)
    assert [e.split(" at ")[0] for e in errors] == ["Unclosed placeholder {{", "Unknown placeholder {{ compnay }}"]


def test_a_placeholder_may_not_span_lines():
    assert check("{{\nfirst_name }}", known=KNOWN)[0].startswith("Unclosed placeholder {{ at line 1, column 1")


@pytest.mark.parametrize("value", ["Ann\r\nBcc: victim@x.test", "Ann\nBcc: v@x.test", "Ann\rX: y", "Ann\u2028X: y"])
def test_line_breaks_in_contact_data_never_reach_the_subject(value):
    subject = render("Hello {{ first_name }}!", {**CONTEXT, "first_name": value}, html=False)
    assert "\r" not in subject and "\n" not in subject and len(subject.splitlines()) == 1
    message = EmailMessage()
    message["Subject"] = subject  # the email package refuses a header with a line break
    assert "Bcc" not in message


def test_line_breaks_in_contact_data_stay_in_a_multi_line_body():
    assert render("Dear\n{{ first_name }}", {"first_name": "A\nB\x00"}, html=False) == "Dear\nA\nB"


TEMPLATE_CHECKS = json.loads((Path(__file__).parent.parent / "fixtures" / "template_checks.json").read_text())


@pytest.mark.parametrize("case", TEMPLATE_CHECKS["cases"], ids=lambda case: repr(case["source"])[:40])
def test_the_linear_scan_answers_what_the_first_engine_answered(case):
    """400 sources of the characters that matter, with what check() and
    render() answered before the scan became linear (recorded from that
    code): the same errors, word for word, and the same letters."""
    known, context = set(TEMPLATE_CHECKS["known"]), TEMPLATE_CHECKS["context"]
    assert check(case["source"], known=known) == case["errors"]
    if isinstance(case["html"], str):
        assert render(case["source"], context, html=True) == case["html"]
    else:
        with pytest.raises(RenderError) as refused:
            render(case["source"], context, html=True)
        assert str(refused.value) == case["html"]["error"]


def test_past_ten_problems_only_their_number_is_given():
    errors = check("{{ a }}" * 3 + "{{" * 11 + "\n{{ q|r }}", known=KNOWN)
    assert len(errors) == 11 and errors[-1] == "… and 5 more problems."
    assert errors[0].startswith("Unknown placeholder {{ a }} at line 1, column 1")
    assert errors[9].startswith("Unclosed placeholder {{ at line 1, column 34")


def test_check_counts_the_problems_the_renderer_sees():
    """check() counts with one regular expression, render() walks the
    tokens one by one: over random texts dense in syntax, both find the same
    problems."""
    rng = random.Random(3)
    pieces = [
        "{",
        "}",
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        " ",
        "\xa0",
        "\n",
        "a",
        "{{ a }}",
        "{{email}}",
        "{{ x|y }}",
        "{{ }}",
        "{{\xa0email }}",
    ]
    for _ in range(2000):
        source = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 80)))
        errors = check(source, known=KNOWN)
        more = int(errors[-1].split()[2]) if errors and errors[-1].startswith("…") else 0
        reported = len(errors) - (1 if more else 0) + more
        problems = sum(
            1
            for kind, start, end in _tokens(source)
            if not (kind == "placeholder" and source[start + 2 : end - 2].strip() in KNOWN)
        )
        assert reported == problems, source
