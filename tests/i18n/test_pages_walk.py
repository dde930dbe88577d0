"""Every page a signed-in owner reaches, and the JSON the live pages poll,
read in Russian and Vietnamese with data on them (servers failing, off and
resting, mailings in every status with letters in every status, a failed
import with a rejection, a failed connection test, bounces, webhooks): no
English from the catalogue is left. The routes come from the resolver
(tests/security/walk.py), so a new page is walked without anyone adding it."""

import html
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from mailing.models import Letter, Mailing
from servers.models import Health, RestReason, TenantRest
from tests.i18n.english import english_left
from tests.mailing.builders import make_template
from tests.security.walk import OneKind, body, concrete_urls, tenant_a_objects, tenant_routes
from tests.servers.factories import make_server

MARKUP = re.compile(r"<script.*?</script>|<style.*?</style>|<select.*?</select>|<[^>]+>", re.S)
# The tenant's own words in the walk's data (tests/security/walk.py and the
# builders), and names that are the same in every language: webhook events
# ("letter.bounced"), API scopes, placeholders and a server's own reply.
DATA = re.compile(
    r"A's mailing|A-[\w-]+|Newsletter|Hello|Hi|Unsubscribe|no address|\bConnect\b|\{\{[^}]*\}\}"
    r"|\b[a-z]+(?:\.[a-z_]+)+\b|\b(?:read|write)\b|451 [^<]*"
)
# English a translation keeps on purpose: Vietnamese says "endpoint".
KEPT = {"ru": set(), "vi": {"endpoint"}}
# JSON members that are keys, states and links for the script, not text.
NOT_TEXT = {"key", "status", "state", "url", "id", "name", "pause", "resume", "cancel", "start", "events"}


def visible(content: str) -> str:
    return html.unescape(MARKUP.sub(" ", content))


def texts(value: object, member: str = "") -> list[str]:
    if isinstance(value, str):
        return [] if member in NOT_TEXT else [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in texts(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v, member)]
    return []


@pytest.fixture
def everything(tenant_a, alice, tmp_path) -> list:
    now = timezone.now()
    failing = make_server(tenant_a, name="A-failing", health=Health.FAILING, health_error="A-error",
                          health_checked_at=now)  # fmt: skip
    off = make_server(tenant_a, name="A-off", enabled=False, max_per_hour=5, max_per_day=21)
    resting = make_server(tenant_a, name="A-resting", backoff_until=now + timedelta(hours=2), health=Health.OK,
                          rest_reason=RestReason.RATE_LIMIT, rest_reply="451 slow down")  # fmt: skip
    TenantRest.objects.create(server=off, tenant=tenant_a, until=now + timedelta(hours=3), reason=RestReason.REFUSALS)
    template = make_template(tenant_a)
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    for status in Mailing.Status.values:
        mailing = Mailing.objects.create(
            tenant=tenant_a, name=f"A-{status}", template=template, status=status, letter_count=21,
            resume_at=now + timedelta(hours=5), scheduled_at=now + timedelta(days=1),
            started_at=now - timedelta(hours=1), finished_at=now,
        )  # fmt: skip
        mailing.servers.add(failing, off, resting, through_defaults={"position": 0})
        for n, letter_status in enumerate(Letter.Status.values):
            Letter.objects.create(tenant=tenant_a, mailing=mailing, email=f"a{n}@x.test", status=letter_status,
                                  server=failing, last_reply="connection lost: timed out", attempts=2)  # fmt: skip
        ids.append(mailing.public_id)
    return ids


def english_on(response) -> list[str]:
    content = body(response).decode()
    if "json" in response["Content-Type"]:
        return [t for text in texts(json.loads(content)) for t in english_left(DATA.sub(" ", text))]
    if "html" in response["Content-Type"]:
        return english_left(DATA.sub(" ", visible(content)))
    return []


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_no_page_shows_english_left_untranslated(alice, tenant_a, everything, language):
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    tenant_a.time_zone = "Asia/Vladivostok"
    tenant_a.save(update_fields=["time_zone"])
    walked, left = 0, {}
    kinds = OneKind(everything)
    for route, _ in tenant_routes():
        for url in concrete_urls(route, everything):
            if kinds.skip(route, url):
                continue
            response = alice.client.get(url)
            kinds.answered(route, url, response.status_code)
            if response.status_code == 200:
                walked += 1
                if found := [w for w in english_on(response) if w not in KEPT[language]]:
                    left[url] = found
    assert walked > 50
    assert left == {}
