"""Writes for mail templates."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import RestrictedError
from django.utils.translation import ngettext

from . import rendering
from .models import MailTemplate


@transaction.atomic
def template_save(*, template: MailTemplate) -> MailTemplate:
    """Create or update. Bad placeholder syntax or an unknown name is refused
    here too, so no path can store a template that fails at send time."""
    template.full_clean()
    sources = {name: getattr(template, name) for name in rendering.TEMPLATE_FIELDS}
    if errors := rendering.check_fields(sources, known=rendering.known_names(template.tenant)):
        raise ValidationError(errors)
    template.save()
    return template


@transaction.atomic
def template_delete(*, template: MailTemplate) -> None:
    # Mailings keep a RESTRICT link to their template: the deletion, not a
    # count made beforehand, decides whether the template is still in use.
    try:
        template.delete()
    except RestrictedError as exc:
        mailings = sorted(str(m) for m in exc.restricted_objects)
        names = ", ".join(f"«{name}»" for name in mailings[:5]) + (" …" if len(mailings) > 5 else "")
        count = len(mailings)
        in_use = ngettext(
            "This template is used by %(count)s mailing: %(names)s. Delete it first; the template stays.",
            "This template is used by %(count)s mailings: %(names)s. Delete those mailings first; the template stays.",
            count,
        )
        raise ValidationError(in_use % {"count": count, "names": names}) from exc
