"""The API's problems that are no field's (no key, a wrong key, a body
that is no JSON, a type it does not take, a method, too many requests) in
the language of Accept-Language: Django REST framework's own details came
back in English in Vietnamese, and the rate limit's half in English in
Russian ("Запрос был проигнорирован. Expected available in 5 seconds.")."""

import re

import pytest

from accounts import api_keys
from accounts.models import ApiScope
from tests.i18n.english import english_left

URL = "/api/v1/lists/"


def asks(client, key: str) -> dict:
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    return {
        "no key": lambda h: client.get(URL, **h),
        "a wrong key": lambda h: client.get(URL, HTTP_AUTHORIZATION="Bearer pr_wrong", **h),
        "no JSON": lambda h: client.post(URL, data="{nope", content_type="application/json", **bearer, **h),
        "a type it does not take": lambda h: client.post(URL, data="x", content_type="text/plain", **bearer, **h),
        "a method": lambda h: client.put(URL, data="{}", content_type="application/json", **bearer, **h),
        "too many requests": lambda h: client.get(URL, **bearer, **h),
    }


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_every_problem_of_the_api_is_in_the_language(client, tenant_a, settings, language):
    settings.API_RATE_LIMIT = 5
    _, key = api_keys.api_key_create(tenant=tenant_a, by=None, name="CRM", scopes=ApiScope.values)
    left = {}
    for name, ask in asks(client, key).items():
        response = ask({"HTTP_ACCEPT_LANGUAGE": language})
        if name == "too many requests":
            while response.status_code != 429:
                response = ask({"HTTP_ACCEPT_LANGUAGE": language})
        assert response.status_code >= 400, name
        body = response.json()
        # The header to send is no English, and after a colon the JSON
        # decoder's own pointer ("Expecting value: line 1 column 2").
        detail = body["detail"].replace("Authorization: Bearer", "").split(": Expecting")[0]
        if found := english_left(f"{body['title']} {detail}"):
            left[name] = (response.status_code, body["detail"], found)
    assert left == {}, left
    assert re.search({"ru": r"\d+ секунд[уы]?\.$", "vi": r"\d+ giây\.$"}[language], body["detail"]), body["detail"]
