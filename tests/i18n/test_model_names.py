"""Every model of our apps, and every field on it, has a name written for
people and marked for translation: the staff admin shows them as column
headers, filter titles and form labels, and Django's fallback (the
attribute's name with spaces, "created at") would stay English."""

from django.apps import apps
from django.utils.functional import Promise

OUR_APPS = ("accounts", "servers", "mailing")


def our_models() -> list:
    return [model for app in OUR_APPS for model in apps.get_app_config(app).get_models()]


def test_every_field_has_a_translatable_verbose_name():
    missing = [
        f"{model._meta.label}.{field.name}"
        for model in our_models()
        for field in model._meta.get_fields()
        if field.concrete and not field.auto_created and not isinstance(field._verbose_name, Promise)
    ]
    assert missing == []


def test_every_model_has_translatable_names():
    missing = [
        model._meta.label
        for model in our_models()
        for option in ("verbose_name", "verbose_name_plural")
        if not isinstance(model._meta.original_attrs.get(option), Promise)
    ]
    assert missing == []


def test_the_check_sees_a_field_left_to_django():
    """Django's own fallback is a plain string: the scan above would see it."""
    from django.db import models

    field = models.CharField(max_length=3)
    field.set_attributes_from_name("created_at")
    assert field.verbose_name == "created at" and not isinstance(field._verbose_name, Promise)
