"""Every form field has a label of its own, marked for translation: a field
without one is labelled by Django from its name ("Password", "Role"), in
English on a Russian or Vietnamese page and in its errors."""

import importlib
import inspect
import pkgutil

import pytest
from django import forms

APPS = ("accounts", "servers", "mailing", "config")


def form_classes() -> list[type[forms.BaseForm]]:
    found = []
    for app in APPS:
        package = importlib.import_module(app)
        for module_info in pkgutil.walk_packages(package.__path__, f"{app}."):
            if ".migrations" in module_info.name or ".management" in module_info.name:
                continue
            module = importlib.import_module(module_info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, forms.BaseForm) and cls.__module__ == module.__name__:
                    found.append(cls)
    return found


def test_every_form_field_has_a_label_of_its_own():
    unlabelled = [
        f"{cls.__module__}.{cls.__name__}.{name}"
        for cls in form_classes()
        for name, field in cls.base_fields.items()
        if field.label is None
    ]
    assert unlabelled == []


@pytest.mark.parametrize(("language", "email", "password"), [("ru", "Адрес электронной почты", "Пароль"),
                                                            ("vi", "Địa chỉ email", "Mật khẩu")])  # fmt: skip
def test_the_login_page_names_its_fields_in_the_language(client, db, language, email, password):
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert f">{email}</label>" in page
    assert f">{password}</label>" in page
    assert ">Password</label>" not in page


def test_the_invitation_form_names_the_role_in_the_language(alice):
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    page = alice.client.get("/accounts/team/").content.decode()
    assert ">Роль</label>" in page
    assert ">Role</label>" not in page
