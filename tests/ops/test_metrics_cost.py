"""A scrape (every 15 to 30 s) must cost the same with a million letters
waiting as with ten: the oldest queued letter is read with one row of the
index per running mailing, never by reading every queued letter."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import metrics
from mailing.models import Letter, Mailing
from tests.mailing.builders import make_template

pytestmark = pytest.mark.django_db

LETTERS = 3000


def letter_rows_read(plan: dict) -> float:
    """Rows the plan's nodes on mailing_letter returned, over all loops."""
    rows = 0.0
    if plan.get("Relation Name") == "mailing_letter":
        rows += plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        rows += letter_rows_read(child)
    return rows


def test_the_oldest_queued_letter_reads_one_row_a_mailing(tenant_a):
    mailing = Mailing.objects.create(
        tenant=tenant_a, name="Big", template=make_template(tenant_a), status=Mailing.Status.ACTIVE
    )
    Letter.objects.bulk_create(Letter(tenant=tenant_a, mailing=mailing, email=f"r{i}@x.test") for i in range(LETTERS))
    hour_ago = timezone.now() - timedelta(hours=1)
    Letter.objects.filter(mailing=mailing).update(created_at=hour_ago)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mailing_letter")
    with CaptureQueriesContext(connection) as queries:
        gauges = {family.name: family for family in metrics._database_gauges()}
    age = gauges["postroute_oldest_queued_letter_seconds"].samples[0].value
    assert 3590 < age < 3700
    sql = next(q["sql"] for q in queries.captured_queries if "mailing_letter" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert letter_rows_read(plan[0]["Plan"]) <= 5
