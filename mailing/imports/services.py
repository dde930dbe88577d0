"""Uploading a CSV of contacts, starting its import and discarding it."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Tenant, User

from .. import contacts
from ..models import ContactImport, ContactList
from . import code_pages
from .detection import _utf16_to_utf8, unreadable_byte
from .inspection import inspect_file
from .limits import FIELD_PREFIX, PENDING, STANDARD_TARGETS, UNMAPPED_MAX_AGE, imports_dir, max_bytes, size_label
from .mapping import check_mapping

Status = ContactImport.Status


def import_upload(*, tenant: Tenant, by: User | None, upload: UploadedFile) -> ContactImport:
    """Store and inspect an uploaded CSV; raises ValidationError with a
    message for the user when it cannot be imported, or when the tenant
    already has as many uploads waiting, or bytes pending, as it may."""
    if upload.size is not None and upload.size > max_bytes():
        raise ValidationError(_("The file is larger than %(size_label)s.") % {"size_label": size_label()})
    _check_room(tenant, upload.size or 0)  # early, before writing the file
    path = _store(upload)
    try:
        facts = inspect_file(path, encoding=_utf16_to_utf8(path))
        with transaction.atomic():
            # Again under the tenant's row lock: two uploads at once cannot
            # both take the last place.
            Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
            _check_room(tenant, path.stat().st_size)
            return ContactImport.objects.create(
                tenant=tenant,
                created_by=by,
                file_name=Path(upload.name or "contacts.csv").name[:255],  # shown only; never part of a path
                file_path=str(path),
                file_size=path.stat().st_size,
                encoding=facts.encoding,
                delimiter=facts.delimiter,
                header=facts.header,
            )
    except ValidationError:
        path.unlink(missing_ok=True)
        raise


def _check_room(tenant: Tenant, size: int) -> None:
    """A member could otherwise park any number of 50 MB files on the disk
    by never mapping them."""
    pending = ContactImport.objects.filter(tenant=tenant, status__in=PENDING)
    waiting = pending.filter(status=Status.UPLOADED).count()
    if waiting >= settings.IMPORT_MAX_WAITING:
        raise ValidationError(
            ngettext(
                "%(waiting)s uploaded file is waiting for its columns to be mapped. Map or discard it first "
                "(Contacts, Recent imports); a file left unmapped is removed after an hour.",
                "%(waiting)s uploaded files are waiting for their columns to be mapped. Map or discard one of "
                "them first (Contacts, Recent imports); a file left unmapped is removed after an hour.",
                waiting,
            )
            % {"waiting": waiting}
        )
    held = pending.aggregate(total=Sum("file_size"))["total"] or 0
    if held + size > settings.IMPORT_MAX_PENDING_BYTES:
        raise ValidationError(
            _(
                "Your files waiting to be imported already take %(filesizeformat)s, "
                "and together they may take %(filesizeformat2)s. Wait for an import to "
                "finish, or discard a file that waits for its column mapping."
            )
            % {
                "filesizeformat": filesizeformat(held),
                "filesizeformat2": filesizeformat(settings.IMPORT_MAX_PENDING_BYTES),
            }
        )


def _store(upload: UploadedFile) -> Path:
    directory = imports_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{secrets.token_hex(16)}.csv"
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > max_bytes():
                break
            out.write(chunk)
    if written > max_bytes() or written == 0:
        path.unlink(missing_ok=True)
        raise ValidationError(_("The file is empty.") if written == 0 else _("The file is too large."))
    return path


def import_reread(*, contact_import: ContactImport, encoding: str) -> ContactImport:
    """Read a waiting upload again in the encoding the user chose on the
    mapping page (the detection cannot settle a file of one word that is a
    word in two encodings): its header and delimiter become that reading's,
    and the import runs in it. Raises ValidationError, the import left as it
    was, for an encoding we do not offer (only the code pages we read are
    ever passed to a codec: "rot13" or "base64" are codecs too) or one that
    has no character for a byte of the file."""
    if encoding not in code_pages.NAMES:
        raise ValidationError(_("Choose one of the encodings offered."), code="encoding")
    gone = ValidationError(_("The uploaded file is gone. Upload it again."), code="gone")
    path = Path(contact_import.file_path)
    try:
        if path.resolve().parent != imports_dir().resolve():
            raise OSError(path)
        with path.open("rb") as f:
            offset = unreadable_byte(f, encoding)
    except OSError as exc:
        raise gone from exc
    if offset is not None:
        raise ValidationError(
            _(
                "The file cannot be read as %(encoding)s: the byte at position %(offset)s of the file is not a "
                "character in it. Choose another encoding."
            )
            % {"encoding": code_pages.NAMES[encoding], "offset": offset},
            code="unreadable",
        )
    try:
        facts = inspect_file(path, encoding=encoding)  # the upload's checks, in this reading
    except OSError as exc:  # discarded (in another tab, or the hourly clean-up) since
        raise gone from exc
    with transaction.atomic():
        imp = ContactImport.objects.select_for_update().filter(pk=contact_import.pk).first()
        if imp is None:  # discarded since: the file went first
            raise gone
        if imp.status != Status.UPLOADED:
            raise ValidationError(_("This import has already started."), code="started")
        imp.encoding, imp.delimiter, imp.header = facts.encoding, facts.delimiter, facts.header
        imp.save(update_fields=["encoding", "delimiter", "header"])
    return imp


@transaction.atomic
def import_start(
    *,
    contact_import: ContactImport,
    columns: dict[int, str],
    contact_list: ContactList | None,
    new_list_name: str = "",
) -> ContactImport:
    """Fix the mapping and the target list and queue the import. In
    `columns` a value "new" makes a custom field named after the header."""
    imp = ContactImport.objects.select_for_update().filter(pk=contact_import.pk).first()
    if imp is None:  # discarded since (in another tab, or the hourly clean-up)
        raise ValidationError(_("The uploaded file is gone. Upload it again."), code="gone")
    if imp.status != Status.UPLOADED:
        raise ValidationError(_("This import has already started."))
    mapping = {str(i): _resolve_target(imp, i, target) for i, target in columns.items() if 0 <= i < len(imp.header)}
    check_mapping(mapping)
    if contact_list is None:
        try:
            contact_list = contacts.list_create(tenant=imp.tenant, name=new_list_name)
        except ValidationError as exc:
            raise ValidationError({"new_list_name": exc.message_dict.get("name", exc.messages)}) from exc
    elif contact_list.tenant_id != imp.tenant_id:
        raise ValidationError(_("Choose one of your own lists."))
    imp.mapping, imp.contact_list, imp.status = mapping, contact_list, Status.QUEUED
    imp.save(update_fields=["mapping", "contact_list", "status"])
    from .. import tasks  # tasks imports the runner, which imports this module

    transaction.on_commit(lambda: tasks.run_contact_import.delay(imp.pk))
    return imp


def _resolve_target(imp: ContactImport, index: int, target: str) -> str:
    if target == "new":
        return FIELD_PREFIX + contacts.custom_field_for_header(tenant=imp.tenant, header=imp.header[index]).key
    if target.startswith(FIELD_PREFIX):
        key = target.removeprefix(FIELD_PREFIX)
        if not imp.tenant.custom_fields.filter(key=key).exists():
            raise ValidationError(_("There is no custom field %(key)s.") % {"key": key})
        return target
    if target and target not in STANDARD_TARGETS:
        raise ValidationError(_("Unknown field “%(target)s”.") % {"target": target})
    return target


def import_discard(*, contact_import: ContactImport) -> None:
    """Drop an upload that was never started."""
    if contact_import.status != Status.UPLOADED:
        raise ValidationError(_("An import that has started cannot be discarded."))
    _remove_file(contact_import)
    contact_import.delete()


def imports_discard_stale(*, older_than: timedelta = UNMAPPED_MAX_AGE) -> int:
    """Uploads nobody mapped (the tab was closed): remove them and their
    files. Beat runs it every 10 minutes."""
    stale = ContactImport.objects.filter(status=Status.UPLOADED, created_at__lt=timezone.now() - older_than)
    count = 0
    for imp in stale.iterator():
        _remove_file(imp)
        imp.delete()
        count += 1
    return count


def _remove_file(imp: ContactImport) -> None:
    path = Path(imp.file_path)
    if path.name and path.resolve().parent == imports_dir().resolve():
        path.unlink(missing_ok=True)
