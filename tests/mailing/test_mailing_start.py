"""Starting a mailing from its page: the request only asks (a task makes
the letters, however many), the page says "Preparing N letters…" and
follows, nothing can change the mailing meanwhile, the dispatcher does not
see it until every letter exists, and a lost or refused start is told."""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone, translation

from mailing import dispatch, tasks
from mailing import mailings as services
from mailing.models import Contact, Letter, Mailing
from tests.servers.factories import make_server

from .builders import make_list, make_template, suppress

pytestmark = pytest.mark.django_db
S = Mailing.Status
ADDRESSES = ["ann@x.test", "bob@x.test", "cat@x.test", "dan@x.test"]


@pytest.fixture
def mailing(tenant_a) -> Mailing:
    server = make_server(tenant_a, name="Own")
    mailing = Mailing(tenant=tenant_a, name="November", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a, "A", ADDRESSES)], servers=[server])
    return mailing


def url(name: str, mailing: Mailing, *args: str) -> str:
    return reverse(f"mailings:{name}", args=[mailing.public_id, *args])


def ask_to_start(person, mailing: Mailing, capture) -> list:
    """Press Start; returns the queued start task, not yet run."""
    with capture() as queued:
        response = person.client.post(url("action", mailing, "start"), follow=True)
    assert response.status_code == 200 and "Starting: preparing 4 letters." in response.content.decode()
    return queued


def test_the_page_asks_and_a_task_makes_the_letters(alice, mailing, django_capture_on_commit_callbacks):
    queued = ask_to_start(alice, mailing, django_capture_on_commit_callbacks)
    mailing.refresh_from_db()
    assert not Letter.objects.exists()
    assert (mailing.status, mailing.letter_count) == (S.DRAFT, 4) and mailing.preparing_since is not None
    page = alice.client.get(url("detail", mailing)).content.decode()
    assert "Preparing 4 letters…" in page and "js/mailing.js" in page
    state = alice.client.get(url("live", mailing)).json()["mailing"]
    assert (state["name"], state["status"], state["preparing"]) == ("November", "draft", True)
    # The dispatcher does not see it until its letters exist.
    assert mailing.pk not in dispatch.active_mailing_ids()
    assert dispatch.run_mailing(mailing_id=mailing.pk) == "idle"

    queued[0]()  # the start task, as a dispatch worker runs it

    mailing.refresh_from_db()
    assert (mailing.status, mailing.letter_count, mailing.preparing_since) == (S.ACTIVE, 4, None)
    assert Letter.objects.filter(mailing=mailing, status=Letter.Status.QUEUED).count() == 4
    assert alice.client.get(url("live", mailing)).json()["mailing"]["preparing"] is False
    assert "Preparing" not in alice.client.get(url("detail", mailing)).content.decode()


def test_while_preparing_nothing_can_change_it(alice, mailing, django_capture_on_commit_callbacks):
    ask_to_start(alice, mailing, django_capture_on_commit_callbacks)
    for action in ("start", "cancel", "schedule"):
        page = alice.client.post(url("action", mailing, action), follow=True).content.decode()
        assert "Its letters are being prepared" in page, action
    assert alice.client.get(url("edit", mailing))["Location"] == url("detail", mailing)
    mailing.refresh_from_db()
    assert services.allowed_actions(mailing) == set()
    with pytest.raises(ValidationError, match="being prepared"):
        services.transition(mailing=mailing, action="cancel")
    assert mailing.status == S.DRAFT and not Letter.objects.exists()


def test_the_template_is_taken_when_start_is_pressed(alice, mailing, django_capture_on_commit_callbacks):
    queued = ask_to_start(alice, mailing, django_capture_on_commit_callbacks)
    template = mailing.template
    template.subject = "Edited a moment later"
    template.save()
    queued[0]()
    mailing.refresh_from_db()
    assert mailing.status == S.ACTIVE and mailing.subject == "Hello {{ first_name }}"


def test_a_start_that_finds_nobody_any_more_says_why(alice, tenant_a, mailing, django_capture_on_commit_callbacks):
    queued = ask_to_start(alice, mailing, django_capture_on_commit_callbacks)
    for email in ADDRESSES:
        suppress(tenant_a, email)
    queued[0]()
    mailing.refresh_from_db()
    assert (mailing.status, mailing.preparing_since, mailing.letter_count) == (S.DRAFT, None, 0)
    page = alice.client.get(url("detail", mailing)).content.decode()
    assert "Not started:</strong> Nobody to send to" in page
    assert "start" in services.allowed_actions(mailing)


def test_nobody_to_send_to_is_said_at_once(alice, tenant_a, mailing, django_capture_on_commit_callbacks):
    for email in ADDRESSES:
        suppress(tenant_a, email)
    with django_capture_on_commit_callbacks() as queued:
        page = alice.client.post(url("action", mailing, "start"), follow=True).content.decode()
    assert "Nobody to send to" in page and queued == []
    mailing.refresh_from_db()
    assert mailing.preparing_since is None


def test_a_mailing_with_nobody_to_send_to_cannot_be_scheduled(alice, tenant_a, mailing):
    """Refused when Schedule is pressed, as Start now refuses it, not at its
    time: the mailing stays a draft with its start time, and the page says why."""
    at = timezone.now() + timedelta(days=1)
    Mailing.objects.filter(pk=mailing.pk).update(scheduled_at=at)
    for email in ADDRESSES:
        suppress(tenant_a, email)
    page = alice.client.post(url("action", mailing, "schedule"), follow=True).content.decode()
    assert "Nobody to send to" in page and "Scheduled." not in page
    mailing.refresh_from_db()
    assert (mailing.status, mailing.scheduled_at) == (S.DRAFT, at) and not mailing.events.exists()
    with pytest.raises(ValidationError, match="Nobody to send to") as refused:
        services.mailing_schedule(mailing=mailing, at=at)
    assert refused.value.code == "nobody"


def test_a_task_delivered_twice_starts_once(mailing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        services.mailing_start_async(mailing=mailing)
    services.mailing_start_prepared(mailing_id=mailing.pk)
    services.mailing_start_prepared(mailing_id=mailing.pk)
    assert Letter.objects.filter(mailing=mailing).count() == 4
    assert mailing.events.count() == 1


def test_a_start_too_long_for_the_worker_is_refused_with_the_reason(mailing, monkeypatch):
    Mailing.objects.filter(pk=mailing.pk).update(preparing_since=timezone.now(), letter_count=4)

    def too_long(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "mailing_start", too_long)
    tasks.start_mailing(mailing.pk)
    mailing.refresh_from_db()
    assert mailing.preparing_since is None and "took too long" in mailing.start_error


def test_beat_asks_again_for_a_start_whose_task_was_lost(mailing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        services.mailing_start_async(mailing=mailing)  # the task is lost
    assert services.restart_stalled_starts() == 0  # it may still be running
    later = timezone.now() + services.START_TASK_LIMIT + timedelta(seconds=1)
    with django_capture_on_commit_callbacks() as queued:
        assert services.restart_stalled_starts(now=later) == 1
    queued[0]()
    mailing.refresh_from_db()
    assert mailing.status == S.ACTIVE and Letter.objects.filter(mailing=mailing).count() == 4


def test_a_due_scheduled_mailing_is_prepared_by_a_task_too(mailing, django_capture_on_commit_callbacks):
    Mailing.objects.filter(pk=mailing.pk).update(status=S.SCHEDULED, scheduled_at=timezone.now())
    with django_capture_on_commit_callbacks() as queued:
        assert services.start_due_mailings() == 1
    assert services.start_due_mailings() == 0  # not asked twice
    assert not Letter.objects.exists()
    queued[0]()
    mailing.refresh_from_db()
    assert mailing.status == S.ACTIVE and Letter.objects.filter(mailing=mailing).count() == 4


def test_another_tenant_cannot_read_the_state(charlie, mailing):
    assert charlie.client.get(url("live", mailing)).status_code == 404


# A worker runs with no request: its language is LANGUAGE_CODE unless the
# work chooses the organisation's, as background work must (README, Languages).
RUSSIAN_NOBODY = "Некому отправлять: списки пусты или все адреса в стоп-листе."


@pytest.fixture
def russian(tenant_a):
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])


def test_a_start_refused_in_the_worker_is_told_in_the_organisations_language(
    russian, tenant_a, mailing, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        services.mailing_start_async(mailing=mailing)
    for email in ADDRESSES:
        suppress(tenant_a, email)
    with translation.override("en"):
        queued[0]()
    mailing.refresh_from_db()
    assert mailing.start_error == RUSSIAN_NOBODY


def test_a_start_too_long_is_told_in_the_organisations_language(russian, mailing, monkeypatch):
    Mailing.objects.filter(pk=mailing.pk).update(preparing_since=timezone.now(), letter_count=4)

    def too_long(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "mailing_start", too_long)
    with translation.override("en"):
        tasks.start_mailing(mailing.pk)
    mailing.refresh_from_db()
    assert mailing.start_error.startswith("Подготовка писем заняла слишком много времени")


def test_a_scheduled_mailing_cancelled_at_its_time_says_why_in_the_organisations_language(
    russian, tenant_a, mailing, django_capture_on_commit_callbacks
):
    Mailing.objects.filter(pk=mailing.pk).update(status=S.SCHEDULED, scheduled_at=timezone.now())
    for email in ADDRESSES:
        suppress(tenant_a, email)
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        assert services.start_due_mailings() == 0
    mailing.refresh_from_db()
    assert mailing.status == S.CANCELLED and mailing.events.get().note == RUSSIAN_NOBODY


# One mailbox, several spellings: contacts are distinct by case (README,
# Contacts), but every provider reads the address without it.


@pytest.fixture
def spelled(tenant_a) -> Mailing:
    """Ann's mailbox written four ways over two lists (the second spelling
    first, so the lowest contact id is not the first in the alphabet), and
    Bob on both."""
    lists = [make_list(tenant_a, "CRM"), make_list(tenant_a, "Shop")]
    for i, email in enumerate(["ann@x.test", "Ann@x.test", "ann@X.TEST", "ANN@x.test", "bob@x.test"]):
        contact = Contact.objects.create(tenant=tenant_a, email=email, first_name=email[:3])
        contact.lists.add(*(lists if email == "bob@x.test" else [lists[i % 2]]))
    mailing = Mailing(tenant=tenant_a, name="Spellings", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=lists, servers=[make_server(tenant_a)])
    return mailing


def letters_of(mailing: Mailing) -> list[tuple[str, str]]:
    return sorted(Letter.objects.filter(mailing=mailing).values_list("email", "context__first_name"))


def test_one_letter_per_mailbox_whatever_the_case_the_lowest_contact_kept(spelled):
    assert services.mailing_start(mailing=spelled) == 2
    assert letters_of(spelled) == [("ann@x.test", "ann"), ("bob@x.test", "bob")]
    spelled.refresh_from_db()
    assert spelled.letter_count == 2


def test_the_batched_start_other_databases_use_keeps_the_same_contact(spelled):
    """The start SQLite takes (the ORM, in batches) makes the same letters
    as PostgreSQL's one INSERT ... SELECT, even cut in batches of one."""
    assert services._create_letters_batched(spelled, batch=1) == 2
    assert letters_of(spelled) == [("ann@x.test", "ann"), ("bob@x.test", "bob")]


@pytest.mark.parametrize("path", ["one statement", "batched"])
def test_the_letters_go_in_the_contacts_order_not_the_alphabets(tenant_a, path):
    """The dispatcher sends a mailing's letters in the order they were made:
    a list imported with its most important rows first goes out in that
    order, whatever the addresses' alphabet (the start's DISTINCT ON sorts
    by address to keep one letter a mailbox)."""
    emails = ["zoe@x.test", "Ann@x.test", "mia@x.test", "ann@x.test", "bob@x.test"]
    contact_list = make_list(tenant_a, "L", emails)
    mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=[make_server(tenant_a)])
    if path == "one statement":
        services.mailing_start(mailing=mailing)
    else:
        services._create_letters_batched(mailing, batch=2)
    made = list(Letter.objects.filter(mailing=mailing).order_by("pk").values_list("email", flat=True))
    assert made == ["zoe@x.test", "Ann@x.test", "mia@x.test", "bob@x.test"]


def test_the_count_shown_before_start_is_the_letters_made(alice, spelled, django_capture_on_commit_callbacks):
    page = alice.client.get(url("detail", spelled)).content.decode()
    assert "2 recipients after suppression." in page
    with django_capture_on_commit_callbacks() as queued:
        page = alice.client.post(url("action", spelled, "start"), follow=True).content.decode()
    assert "Starting: preparing 2 letters." in page
    queued[0]()
    spelled.refresh_from_db()
    assert (spelled.status, spelled.letter_count, Letter.objects.filter(mailing=spelled).count()) == (S.ACTIVE, 2, 2)


def test_a_suppressed_spelling_keeps_every_spelling_out(tenant_a, spelled):
    suppress(tenant_a, "aNN@x.test")
    assert services.mailing_start(mailing=spelled) == 1
    assert letters_of(spelled) == [("bob@x.test", "bob")]
