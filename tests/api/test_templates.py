"""Templates through the API: read only; another tenant's is 404."""

import pytest

from tests.mailing.builders import make_template

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/templates/"


def test_list_and_read(api, tenant_a):
    template = make_template(tenant_a, name="Welcome")
    assert [t["id"] for t in api.get(URL).json()["results"]] == [str(template.public_id)]
    body = api.get(f"{URL}{template.public_id}/").json()
    assert body["subject"] == "Hello {{ first_name }}" and body["name"] == "Welcome"


def test_templates_cannot_be_written(api, tenant_a):
    problem(api.post(URL, {"name": "x"}), 405)


def test_another_tenants_template_is_404(api, tenant_b):
    theirs = make_template(tenant_b)
    problem(api.get(f"{URL}{theirs.public_id}/"), 404)
    assert api.get(URL).json()["results"] == []
