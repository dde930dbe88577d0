"""The page context after a view logged the user out (logout with a body
the parser refuses, outside production's CSRF check): no query on behalf of
a user who is gone, no error."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from accounts.context_processors import tenancy
from accounts.models import Membership

pytestmark = pytest.mark.django_db


def test_a_request_whose_user_was_logged_out_lists_no_other_organisations(alice):
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.membership = Membership.objects.get(user=alice.user)
    request.onboarding_step = None
    context = tenancy(request)
    assert context["other_memberships"] == [] and context["membership"] == request.membership
