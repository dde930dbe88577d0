from django.conf import settings
from django.http import HttpRequest

from .models import Membership


def tenancy(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    others: list[Membership] = []
    # A view may have logged the user out after the middleware found the
    # membership (logout): then there are no other organisations to list.
    # (Error pages may render before the user is known at all.)
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    if membership is not None and signed_in and getattr(request, "onboarding_step", "x") is None:
        others = list(Membership.objects.filter(user=request.user).exclude(pk=membership.pk).select_related("tenant"))
    return {
        "membership": membership,
        "current_tenant": membership.tenant if membership else None,
        "other_memberships": others,
        "deployment_mode": settings.DEPLOYMENT_MODE,
    }
