"""Mailings: saving a draft, the state machine, starting (a letter per
mailbox not suppressed, template snapshot), pages and ownership."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from mailing import mailings as services
from mailing.models import Letter, Mailing, MailingEvent, MailingServer
from tests.servers.factories import make_server

from .builders import make_list, make_template, suppress

pytestmark = pytest.mark.django_db
S = Mailing.Status


@pytest.fixture
def setup(tenant_a):
    server = make_server(tenant_a, name="Own", sender_email="news@acme.test")
    lists = [
        make_list(tenant_a, "A", ["ann@x.test", "bob@x.test", "cat@x.test"]),
        make_list(tenant_a, "B", ["bob@x.test", "dan@x.test"]),  # bob is in both
    ]
    template = make_template(tenant_a)
    mailing = Mailing(tenant=tenant_a, name="November", template=template)
    services.mailing_save(mailing=mailing, lists=lists, servers=[server])
    return mailing


def test_start_creates_one_letter_per_unique_unsuppressed_recipient(setup, tenant_a, alice):
    suppress(tenant_a, "cat@x.test")
    assert services.mailing_start(mailing=setup, by=alice.user) == 3
    letters = Letter.objects.filter(mailing=setup)
    assert sorted(letters.values_list("email", flat=True)) == ["ann@x.test", "bob@x.test", "dan@x.test"]
    assert set(letters.values_list("status", flat=True)) == {Letter.Status.QUEUED}
    assert len(set(letters.values_list("public_id", flat=True))) == 3
    assert letters.get(email="ann@x.test").context["first_name"] == "ann"
    setup.refresh_from_db()
    assert (setup.status, setup.letter_count) == (S.ACTIVE, 3)
    event = MailingEvent.objects.get(mailing=setup)
    assert (event.from_status, event.to_status, event.by) == (S.DRAFT, S.ACTIVE, alice.user)


def test_editing_the_template_after_start_changes_nothing(setup):
    services.mailing_start(mailing=setup)
    template = setup.template
    template.subject = "Changed"
    template.save()
    setup.refresh_from_db()
    assert setup.subject == "Hello {{ first_name }}"


def test_a_mailing_starts_once(setup):
    services.mailing_start(mailing=setup)
    with pytest.raises(ValidationError):
        services.mailing_start(mailing=setup)
    assert Letter.objects.filter(mailing=setup).count() == 4


def test_nobody_to_send_to_is_refused_and_nothing_changes(setup, tenant_a):
    for email in ["ann@x.test", "bob@x.test", "cat@x.test", "dan@x.test"]:
        suppress(tenant_a, email)
    with pytest.raises(ValidationError, match="Nobody to send to"):
        services.mailing_start(mailing=setup)
    setup.refresh_from_db()
    assert setup.status == S.DRAFT and not Letter.objects.exists()


@pytest.mark.parametrize(
    "path, allowed",
    [
        ([], {"schedule", "start", "cancel"}),
        (["start"], {"pause", "cancel", "wait", "block", "complete"}),
        (["start", "pause"], {"resume", "cancel"}),
        (["start", "wait"], {"pause", "cancel", "wake", "complete"}),
        (["start", "block"], {"pause", "cancel", "wake", "complete"}),
        (["start", "cancel"], set()),
    ],
)
def test_the_state_machine(setup, path, allowed):
    for action in path:
        if action == "start":
            services.mailing_start(mailing=setup)
        else:
            services.transition(mailing=setup, action=action)
    setup.refresh_from_db()
    assert services.allowed_actions(setup) == allowed
    for action in set(services.TRANSITIONS) - allowed - {"unschedule"}:
        with pytest.raises(ValidationError):
            services.transition(mailing=setup, action=action)


def test_only_the_tenants_own_and_platform_servers_are_kept_in_priority_order(tenant_a, tenant_b, settings):
    settings.DEPLOYMENT_MODE = "saas"
    second = make_server(tenant_a, name="Second", priority=5)
    first = make_server(tenant_a, name="First", priority=1)
    platform = make_server(None, name="Platform")
    foreign = make_server(tenant_b, name="Foreign")
    mailing = Mailing(tenant=tenant_a, name="x", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a)], servers=[platform, foreign, second, first])
    assert [link.server.name for link in mailing.server_links.all()] == ["First", "Second", "Platform"]


def test_the_page_shows_the_from_of_each_server_and_warns_when_none_honours_it(alice, tenant_a):
    plain = make_server(tenant_a, name="Yandex", sender_email="shop@yandex.test", sender_name="Shop")
    mailing = Mailing(
        tenant=tenant_a, name="x", template=make_template(tenant_a, sender_email="ceo@acme.test", sender_name="Acme")
    )
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a)], servers=[plain])
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Acme &lt;shop@yandex.test&gt;" in page
    assert "none of these servers allows sender substitution" in page
    plain.allow_sender_substitution = True
    plain.save()
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Acme &lt;ceo@acme.test&gt;" in page and "none of these servers" not in page


@pytest.mark.parametrize("name", ["Shop", "Магазин"])
def test_the_page_shows_a_from_whose_mailbox_is_not_ascii(alice, tenant_a, name):
    server = make_server(tenant_a, name="Own", sender_email="почта@пример.рф", sender_name=name)
    mailing = Mailing(tenant=tenant_a, name="x", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a)], servers=[server])
    response = alice.client.get(reverse("mailings:detail", args=[mailing.public_id]))
    assert response.status_code == 200
    assert f"{name} &lt;почта@пример.рф&gt;" in response.content.decode()  # not an encoded word


def test_a_member_creates_and_starts_a_mailing_through_the_pages(bob, tenant_a, django_capture_on_commit_callbacks):
    server = make_server(tenant_a)
    contact_list = make_list(tenant_a, "L", ["x@y.test"])
    template = make_template(tenant_a)
    data = {"name": "Launch", "template": template.pk, "lists": [contact_list.pk], "servers": [server.pk]}
    response = bob.client.post(reverse("mailings:new"), data)
    mailing = Mailing.objects.get(name="Launch")
    assert response["Location"] == reverse("mailings:detail", args=[mailing.public_id])
    with django_capture_on_commit_callbacks() as start_task:
        bob.client.post(reverse("mailings:action", args=[mailing.public_id, "start"]))
    start_task[0]()  # the task that makes the letters (not the sending it queues)
    mailing.refresh_from_db()
    assert mailing.status == S.ACTIVE and mailing.letters.count() == 1
    listing = bob.client.get(reverse("mailings:list")).content.decode()
    assert "Launch" in listing and 'data-status="queued"' in listing


def test_another_tenants_template_or_list_cannot_be_chosen(alice, tenant_b):
    theirs = make_template(tenant_b)
    response = alice.client.post(reverse("mailings:new"), {"name": "x", "template": theirs.pk})
    assert "template" in response.context["form"].errors


@pytest.mark.parametrize("fields", [["template"], ["lists"], ["servers"], ["template", "lists", "servers"]])
def test_an_id_beyond_the_databases_integers_is_an_error_next_to_its_field(alice, fields):
    """SQLite (development) raised OverflowError binding it: a 500; PostgreSQL
    found no row. Both say the choice is not one of the available ones."""
    beyond = "9" * 20
    response = alice.client.post(reverse("mailings:new"), {"name": "Kept"} | dict.fromkeys(fields, beyond))
    assert response.status_code == 400  # the form again, with its errors
    form = response.context["form"]
    assert all(form.has_error(field, "invalid_choice") for field in fields)
    assert form["name"].value() == "Kept"
    assert not Mailing.objects.filter(name="Kept").exists()


def test_letters_page_with_keyset_pagination_and_status_filter(setup, alice):
    services.mailing_start(mailing=setup)
    Letter.objects.filter(email="bob@x.test").update(status=Letter.Status.FAILED, last_reply="550 5.1.1 no such user")
    url = reverse("mailings:detail", args=[setup.public_id])
    failed = alice.client.get(url + "?status=failed")
    assert [le["email"] for le in failed.context["letters"]] == ["bob@x.test"]
    assert b"550 5.1.1 no such user" in failed.content
    first = Letter.objects.filter(mailing=setup).order_by("pk").first()
    after = alice.client.get(url + f"?after={first.pk}")
    assert first.email not in [le["email"] for le in after.context["letters"]]


def test_an_outsider_gets_404_on_every_mailing_url(setup, charlie):
    pid = setup.public_id
    for method, url in [
        ("get", reverse("mailings:detail", args=[pid])),
        ("get", reverse("mailings:edit", args=[pid])),
        ("post", reverse("mailings:edit", args=[pid])),
        ("post", reverse("mailings:action", args=[pid, "start"])),
        ("post", reverse("mailings:action", args=[pid, "cancel"])),
    ]:
        assert getattr(charlie.client, method)(url).status_code == 404, url
    setup.refresh_from_db()
    assert setup.status == S.DRAFT
    assert b"November" not in charlie.client.get(reverse("mailings:list")).content


def test_a_suspended_tenants_due_mailing_stays_scheduled_until_reactivation(
    setup, tenant_a, django_capture_on_commit_callbacks
):
    past = timezone.now() - timedelta(minutes=1)
    Mailing.objects.filter(pk=setup.pk).update(status=S.SCHEDULED, scheduled_at=past)
    account_services.tenant_suspend(tenant=tenant_a, reason="unpaid")
    assert services.start_due_mailings() == 0
    setup.refresh_from_db()
    assert setup.status == S.SCHEDULED and not Letter.objects.exists()
    account_services.tenant_reactivate(tenant=tenant_a)
    with django_capture_on_commit_callbacks() as start_task:
        assert services.start_due_mailings() == 1
    start_task[0]()  # the task that makes the letters (not the sending it queues)
    setup.refresh_from_db()
    assert setup.status == S.ACTIVE and Letter.objects.filter(mailing=setup).count() == 4


def test_a_server_in_use_cannot_be_deleted(setup, alice):
    services.mailing_start(mailing=setup)
    server = setup.server_links.get().server
    response = alice.client.post(reverse("servers:delete", args=[server.public_id]), follow=True)
    assert "use this server: «November» (sending)" in response.content.decode()
    assert server.__class__.objects.filter(pk=server.pk).exists()
    services.transition(mailing=setup, action="cancel")
    alice.client.post(reverse("servers:delete", args=[server.public_id]))
    assert not server.__class__.objects.filter(pk=server.pk).exists()


def test_a_new_mailing_offers_every_enabled_server_ticked_and_numbered_in_order(alice, tenant_a, settings):
    settings.DEPLOYMENT_MODE = "saas"
    make_server(tenant_a, name="Second", priority=5)
    make_server(tenant_a, name="First", priority=1)
    make_server(tenant_a, name="Off", priority=0, enabled=False)
    make_server(None, name="Platform")
    template = make_template(tenant_a)
    page = alice.client.get(reverse("mailings:new"))
    html = page.content.decode()
    labels = [label.split(" — ")[0] for _, label in page.context["form"].fields["servers"].choices]
    assert labels == ["1. First", "2. Second", "3. Platform"]
    assert html.count('name="servers" value=') == 3 and html.count('name="servers" value="') == html.count(" checked")
    assert html.index("1. First") < html.index("2. Second") < html.index("3. Platform")
    assert page.context["form"]["template"].value() == template.pk  # the only one, chosen already


def test_a_drafts_sender_table_flags_a_failing_server(alice, tenant_a):
    server = make_server(tenant_a, name="Yandex", health="failing", health_error="535 Could not authenticate")
    mailing = Mailing(tenant=tenant_a, name="x", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a)], servers=[server])
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert ">Failing</span>" in page and "535 Could not authenticate" in page


def test_a_server_named_twice_is_linked_once(tenant_a):
    # The service is every caller's way in (the pages, the API, the admin):
    # a second link of one server broke its constraint, a 500.
    first, second = make_server(tenant_a, name="One", priority=1), make_server(tenant_a, name="Two", priority=2)
    mailing = Mailing(tenant=tenant_a, name="Twice", template=make_template(tenant_a))
    lists = [make_list(tenant_a, "A", ["ann@x.test"])]
    services.mailing_save(mailing=mailing, lists=lists, servers=[second, first, second])
    links = MailingServer.objects.filter(mailing=mailing).order_by("position").values_list("server__name", flat=True)
    assert list(links) == ["One", "Two"]
