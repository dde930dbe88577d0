"""A word two pages share is translated so that it is right on both:
"Progress" heads a mailing's page and an import's, and the Russian said
"Ход импорта" (the import's progress) on the mailing's page."""

import re

from django.urls import reverse

from tests.mailing.dashboard_builders import running_mailing
from tests.servers.factories import make_server


def test_a_mailings_progress_is_not_called_an_imports_in_russian(alice, tenant_a):
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    mailing = running_mailing(tenant_a, [make_server(tenant_a)], queued=1)
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    heading = re.search(r'<h2 id="progress-heading">(.*?)</h2>', page).group(1)
    assert heading == "Ход выполнения"
