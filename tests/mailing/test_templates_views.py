"""The template pages: writing with errors next to the fields, header
injection refused, placeholders checked at save, the preview with the From of
every server and its sandboxed HTML, and ownership."""

import re

import pytest
from django.urls import reverse

from accounts.models import Tenant
from mailing.models import Contact, CustomField, Mailing, MailTemplate
from tests.helpers import SPECIAL_USE_ADDRESSES, deployment_mode
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db

PREVIEW_CSP = "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'"
VALID = {
    "name": "Spring sale",
    "subject": "Hello {{ first_name }}",
    "text_body": "Hi {{ first_name }}!\nUnsubscribe: {{ unsubscribe_url }}",
    "html_body": "<p>Hi {{ first_name }}</p>",
    "sender_email": "news@acme.test",
    "sender_name": "Acme News",
    "reply_to": "replies@acme.test",
}


def make_template(tenant: Tenant, **fields: object) -> MailTemplate:
    return MailTemplate.objects.create(tenant=tenant, **{**VALID, **fields})


def field_errors(response, field: str) -> list[str]:
    """The errors the page shows next to `field` (the ul after its input)."""
    html = response.content.decode()
    match = re.search(rf'<ul class="field-errors" id="id_{field}_error">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1), re.S) if match else []


def test_a_member_creates_a_template_and_lands_on_its_preview(bob, tenant_a):
    response = bob.client.post(reverse("templates:add"), VALID)
    template = MailTemplate.objects.get(tenant=tenant_a)
    assert response.status_code == 302
    assert response.url == reverse("templates:preview", args=[template.public_id])
    assert (template.subject, template.sender_email, template.reply_to) == (
        "Hello {{ first_name }}",
        "news@acme.test",
        "replies@acme.test",
    )
    assert b"Spring sale" in bob.client.get(reverse("templates:list")).content


def test_the_sender_is_optional(alice, tenant_a):
    data = {**VALID, "sender_email": "", "sender_name": "", "reply_to": "", "html_body": ""}
    assert alice.client.post(reverse("templates:add"), data).status_code == 302
    assert MailTemplate.objects.get(tenant=tenant_a).sender_email == ""


@pytest.mark.parametrize("field", ["subject", "sender_name", "sender_email", "reply_to"])
@pytest.mark.parametrize("injected", ["\r\nBcc: victim@evil.test", "\nBcc: victim@evil.test", "\r", "\x00"])
def test_header_injection_is_refused_next_to_the_field(alice, tenant_a, field, injected):
    value = VALID[field] + injected
    response = alice.client.post(reverse("templates:add"), {**VALID, field: value})
    assert response.status_code == 400
    errors = field_errors(response, field)
    assert len(errors) == 1 and "it cannot go into a mail header" in errors[0], errors
    assert not MailTemplate.objects.exists()


@pytest.mark.parametrize("field", ["subject", "sender_name", "sender_email", "reply_to"])
def test_a_trailing_line_break_is_refused_not_stripped_on_edit(alice, tenant_a, field):
    template = make_template(tenant_a)
    response = alice.client.post(reverse("templates:edit", args=[template.public_id]), {**VALID, field: "x\r\n"})
    assert response.status_code == 400 and field_errors(response, field)
    template.refresh_from_db()
    assert getattr(template, field) == VALID[field]


@pytest.mark.parametrize("field", ["sender_email", "reply_to"])
@pytest.mark.parametrize("address", SPECIAL_USE_ADDRESSES)
def test_a_special_use_sender_or_reply_to_is_for_self_hosted_installations(alice, tenant_a, settings, field, address):
    deployment_mode(settings, "saas")
    response = alice.client.post(reverse("templates:add"), {**VALID, field: address})
    assert response.status_code == 400
    domain = address.partition("@")[2]
    assert field_errors(response, field) == [
        f"“{domain}” is a special-use or reserved name that only a private network can reach; "
        "only a self-hosted installation may use it."
    ]
    deployment_mode(settings, "self_hosted")
    assert alice.client.post(reverse("templates:add"), {**VALID, field: address}).status_code == 302
    assert getattr(MailTemplate.objects.get(tenant=tenant_a), field) == address


@pytest.mark.parametrize("field", ["sender_email", "reply_to"])
def test_addresses_are_validated(alice, field):
    response = alice.client.post(reverse("templates:add"), {**VALID, field: "not an address"})
    assert response.status_code == 400
    assert field_errors(response, field) == ["Enter a valid email address."]
    assert not MailTemplate.objects.exists()


def test_an_unknown_placeholder_is_refused_at_save_with_the_known_names(alice, tenant_a):
    CustomField.objects.create(tenant=tenant_a, key="company", label="Company")
    data = {**VALID, "text_body": "Dear {{ first_name }} of {{ compnay }}", "html_body": "<p>{{ company }}</p>"}
    response = alice.client.post(reverse("templates:add"), data)
    assert response.status_code == 400
    assert field_errors(response, "text_body") == [
        "Unknown placeholder {{ compnay }} at line 1, column 26 — known: first_name, last_name, email, company, "
        "unsubscribe_url."
    ]
    assert field_errors(response, "html_body") == []
    assert not MailTemplate.objects.exists()


@pytest.mark.parametrize(
    ("field", "source", "message"),
    [
        ("subject", "{{ first_name|upper }}", "Filters are not allowed"),
        ("text_body", "{% load static %}", "Template tags such as {% load static %} are not allowed"),
        ("html_body", "<p>{{ contact.email }}</p>", "Attribute lookups are not allowed"),
    ],
)
def test_template_syntax_is_refused_next_to_the_field(alice, field, source, message):
    response = alice.client.post(reverse("templates:add"), {**VALID, field: source})
    assert response.status_code == 400
    assert field_errors(response, field)[0].startswith(message)
    assert not MailTemplate.objects.exists()


def test_a_placeholder_in_the_sender_name_is_refused(alice):
    response = alice.client.post(reverse("templates:add"), {**VALID, "sender_name": "{{ first_name }} at Acme"})
    assert response.status_code == 400 and "subject and the bodies only" in field_errors(response, "sender_name")[0]


def test_editing_saves_and_deleting_removes(alice, tenant_a):
    template = make_template(tenant_a)
    url = reverse("templates:edit", args=[template.public_id])
    assert alice.client.get(url).status_code == 200
    assert alice.client.post(url, {**VALID, "subject": "New {{ last_name }}"}).status_code == 302
    template.refresh_from_db()
    assert template.subject == "New {{ last_name }}"
    delete = reverse("templates:delete", args=[template.public_id])
    assert b"Delete the template" in alice.client.get(delete).content
    assert alice.client.post(delete).status_code == 302
    assert not MailTemplate.objects.filter(pk=template.pk).exists()


def test_a_template_used_by_a_mailing_is_not_deleted(alice, tenant_a):
    template = make_template(tenant_a)
    Mailing.objects.create(tenant=tenant_a, name="April news", template=template)
    response = alice.client.post(reverse("templates:delete", args=[template.public_id]), follow=True)
    assert "This template is used by 1 mailing: «April news»." in response.content.decode()
    assert MailTemplate.objects.filter(pk=template.pk).exists()


def test_the_preview_shows_the_from_of_every_server(alice, tenant_a, settings):
    settings.DEPLOYMENT_MODE = "saas"
    make_server(tenant_a, name="Own domain", sender_email="robot@acme.test", allow_sender_substitution=True)
    make_server(tenant_a, name="Gmail box", sender_email="acme@gmail.test", sender_name="Acme Gmail")
    make_server(None, name="Platform", sender_email="out@platform.test", sender_name="Postroute")
    template = make_template(tenant_a)
    html = alice.client.get(reverse("templates:preview", args=[template.public_id])).content.decode()
    assert "Acme News &lt;news@acme.test&gt;" in html  # substituted on the own-domain server
    assert "Acme News &lt;acme@gmail.test&gt;" in html  # the template's name, the server's address
    assert "Acme News &lt;out@platform.test&gt;" in html
    assert html.count("this server does not allow sender substitution") == 2
    assert "No server honours the fixed sender address" not in html
    assert 'Reply-To: <span class="break">replies@acme.test</span>' in html
    assert "Hello Jane" in html  # the sample contact


def test_the_preview_shows_a_from_whose_mailbox_is_not_ascii(alice, tenant_a):
    name = "Acme"
    make_server(tenant_a, name="Own domain", sender_email="почта@пример.рф", allow_sender_substitution=True)
    template = make_template(tenant_a, sender_email="nguyễn@công-ty.vn", sender_name=name)
    response = alice.client.get(reverse("templates:preview", args=[template.public_id]))
    assert response.status_code == 200
    assert f"{name} &lt;nguyễn@công-ty.vn&gt;" in response.content.decode()


def test_the_preview_warns_when_no_server_honours_the_fixed_sender(alice, tenant_a):
    make_server(tenant_a, name="Gmail box", sender_email="acme@gmail.test")
    template = make_template(tenant_a)
    html = alice.client.get(reverse("templates:preview", args=[template.public_id])).content.decode()
    assert "No server honours the fixed sender address news@acme.test" in html


def test_the_preview_renders_the_chosen_contact(alice, tenant_a):
    Contact.objects.create(tenant=tenant_a, email="ann@x.test", first_name="Ann")
    bea = Contact.objects.create(tenant=tenant_a, email="bea@x.test", first_name="<b>Bea</b>")
    template = make_template(tenant_a)
    url = reverse("templates:preview", args=[template.public_id])
    html = alice.client.get(url, {"contact": str(bea.public_id)}).content.decode()
    assert "Hello &lt;b&gt;Bea&lt;/b&gt;" in html
    assert f'<option value="{bea.public_id}" selected>' in html
    assert "Jane Example" not in html
    first = alice.client.get(url).content.decode()
    assert "Hello Ann" in first


def test_the_html_preview_is_sandboxed(alice, tenant_a):
    contact = Contact.objects.create(tenant=tenant_a, email="ann@x.test", first_name="<script>alert(1)</script>")
    template = make_template(tenant_a, html_body="<p>Hi {{ first_name }}</p><script>parent.steal()</script>")
    page = alice.client.get(reverse("templates:preview", args=[template.public_id]), {"contact": contact.public_id})
    html = page.content.decode()
    frame = re.search(r"<iframe [^>]*>", html).group(0)
    frame_url = reverse("templates:preview_html", args=[template.public_id]) + f"?contact={contact.public_id}"
    assert 'sandbox=""' in frame and f'src="{frame_url}"' in frame
    assert "allow-scripts" not in html and "allow-same-origin" not in html
    assert "frame-src 'self'" in page["Content-Security-Policy"]
    assert "<script>parent.steal()" not in html  # the HTML part is only in the frame

    response = alice.client.get(frame_url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == PREVIEW_CSP
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response.content.decode() == (
        "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p><script>parent.steal()</script>"
    )


def test_a_template_without_html_has_no_frame(alice, tenant_a):
    template = make_template(tenant_a, html_body="")
    html = alice.client.get(reverse("templates:preview", args=[template.public_id])).content.decode()
    assert "<iframe" not in html
    assert alice.client.get(reverse("templates:preview_html", args=[template.public_id])).status_code == 404


def object_urls(template: MailTemplate) -> list[tuple[str, str]]:
    pid = template.public_id
    return [
        ("get", reverse("templates:edit", args=[pid])),
        ("post", reverse("templates:edit", args=[pid])),
        ("get", reverse("templates:delete", args=[pid])),
        ("post", reverse("templates:delete", args=[pid])),
        ("get", reverse("templates:preview", args=[pid])),
        ("get", reverse("templates:preview_html", args=[pid])),
    ]


def test_an_outsider_gets_404_on_every_template_url(alice, charlie, tenant_a):
    template = make_template(tenant_a)
    for method, url in object_urls(template):
        data = {**VALID, "subject": "Owned"} if method == "post" else {}
        assert getattr(charlie.client, method)(url, data).status_code == 404, (method, url)
    assert b"Spring sale" not in charlie.client.get(reverse("templates:list")).content
    template.refresh_from_db()
    assert template.subject == VALID["subject"]


def test_the_preview_refuses_another_tenants_contact_and_a_bad_id(alice, charlie, tenant_a, tenant_b):
    ours = make_template(tenant_a)
    theirs = make_template(tenant_b)
    our_contact = Contact.objects.create(tenant=tenant_a, email="ann@x.test", first_name="Ann")
    for name in ("templates:preview", "templates:preview_html"):
        url = reverse(name, args=[theirs.public_id])
        assert charlie.client.get(url, {"contact": our_contact.public_id}).status_code == 404
        assert alice.client.get(reverse(name, args=[ours.public_id]), {"contact": "not-a-uuid"}).status_code == 404


def test_a_script_in_the_html_body_is_warned_about_at_save(alice, tenant_a):
    data = {**VALID, "html_body": '<p>Hi</p><SCRIPT type="text/javascript">track()</script>'}
    page = alice.client.post(reverse("templates:add"), data, follow=True).content.decode()
    assert "mail clients remove scripts" in page
    page = alice.client.post(reverse("templates:add"), {**VALID, "name": "Clean"}, follow=True).content.decode()
    assert "mail clients remove scripts" not in page
