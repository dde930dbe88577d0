from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse


@login_not_required
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    raise NotImplementedError  # written with the contacts part of issue #4
