"""Each tenant's time zone, in one place: which names are valid, activating
the zone (TenantMiddleware does it per request; work outside a request
wraps itself in timezone.override(zone_of(tenant.time_zone))), reading a
local time typed into a form, and showing a moment.

Every moment the product shows goes through when(): "today at 10:01",
"tomorrow at 10:01", "1 Dec at 10:01", with the zone's abbreviation where a
time could be misread ("tomorrow at 10:01 MSK"). Templates use it as the
`when` filter (accounts.templatetags.when, a builtin)."""

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache

from django import forms
from django.core.exceptions import ValidationError
from django.utils import dateformat, timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import npgettext_lazy, pgettext

DEFAULT_ZONE = "UTC"


@cache
def zone_names() -> frozenset[str]:
    """The IANA names this machine knows (the system's database and the
    tzdata package): what browsers report, old aliases included."""
    return frozenset(zoneinfo.available_timezones()) - {"Factory", "localtime"}


def zone_name(name: str) -> str:
    """How a zone's name reads: "Asia/Ho Chi Minh"."""
    return name.replace("_", " ")


def zone_choices() -> list[tuple[str, str]]:
    return [(name, zone_name(name)) for name in sorted(zone_names())]


def validate_time_zone(value: str) -> None:
    if value not in zone_names():
        raise ValidationError(_("“%(zone)s” is not a time zone name."), code="invalid", params={"zone": value})


def zone_of(name: str) -> tzinfo:
    """The zone of a tenant's stored name; UTC for a name this machine no
    longer knows (never a 500)."""
    try:
        return zoneinfo.ZoneInfo(name) if name in zone_names() else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


# Reading local input


def local_to_aware(naive: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in `zone` as an aware datetime. A time the clocks
    skip (the spring gap) is refused; a time they show twice (the autumn
    fold) is the first of the two, the earlier instant."""
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        shifted = first.astimezone(UTC).astimezone(zone)
        raise ValidationError(
            _(
                "There is no %(time)s on %(date)s in %(zone)s: the clocks go forward then. "
                "Choose another time, for example %(later)s."
            ),
            code="nonexistent_time",
            params={
                "time": dateformat.format(naive, "H:i"),
                "date": _day(naive, naive.date()),
                "zone": zone,
                "later": dateformat.format(shifted, "H:i"),
            },
        )
    return first


# Every zone's offset is under a day: a moment a day inside datetime's
# range reads as a wall-clock time in any zone (the tenant's next one too).
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


class LocalDateTimeField(forms.DateTimeField):
    """A date and time typed in the tenant's zone (`zone`, set by the form),
    read DST-safe by local_to_aware rather than Django's generic refusal.
    A time at either end of the calendar (1 January of year 1 east of UTC,
    31 December 9999 west of it) has no instant: it is refused as invalid,
    as year 10000 is, instead of overflowing."""

    zone: tzinfo = UTC

    def to_python(self, value: object) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            result = value
        else:
            # The parent's parsing, with UTC active: a wall time comes back
            # tagged UTC (an input with an offset of its own keeps it).
            with timezone.override(UTC):
                result = super().to_python(value)
            if result is not None and result.tzinfo is UTC:
                result = result.replace(tzinfo=None)
        if result is None:
            return None
        return instant(result, self.zone, invalid=self.error_messages["invalid"])


def instant(typed: datetime, zone: tzinfo, *, invalid: str) -> datetime:
    """A typed date and time as an instant: one with an offset of its own
    as given, one without as a wall-clock time in `zone` (local_to_aware:
    the spring gap refused, the autumn fold the first). One at either end
    of the calendar, that no zone could show, is refused with `invalid`.
    The form's field and the API read times through it alike."""
    try:
        aware = typed if timezone.is_aware(typed) else local_to_aware(typed, zone)
        shown_everywhere = EARLIEST <= aware <= LATEST
    except OverflowError:
        shown_everywhere = False
    if not shown_everywhere:
        raise ValidationError(invalid, code="invalid")
    return aware


# Showing moments


def when(moment: datetime, *, now: datetime | None = None, zone: bool = False) -> str:
    """A moment in the active zone (the tenant's), with the day when it is
    not today, and with the zone's abbreviation when `zone` is true."""
    local = _local(moment)
    today = timezone.localtime(now or timezone.now()).date()
    time = dateformat.format(local, "H:i")
    days = (local.date() - today).days
    if days == 0:
        text = pgettext("moment", "today at %(time)s") % {"time": time}
    elif days == 1:
        text = pgettext("moment", "tomorrow at %(time)s") % {"time": time}
    elif days == -1:
        text = pgettext("moment", "yesterday at %(time)s") % {"time": time}
    else:
        text = pgettext("moment", "%(date)s at %(time)s") % {"date": _day(local, today), "time": time}
    if zone:
        text = pgettext("moment and its time zone", "%(moment)s %(zone)s") % {
            "moment": text,
            "zone": zone_abbreviation(local),
        }
    return text


# The units of "5 minutes ago" (`ago`): Russian names them there in the
# accusative, "1 минуту назад", "1 неделю назад", where Django's timesince
# has the nominative it uses alone ("1 минута").
AGO_UNITS = {
    "year": npgettext_lazy("time ago", "%(num)d year", "%(num)d years", "num"),
    "month": npgettext_lazy("time ago", "%(num)d month", "%(num)d months", "num"),
    "week": npgettext_lazy("time ago", "%(num)d week", "%(num)d weeks", "num"),
    "day": npgettext_lazy("time ago", "%(num)d day", "%(num)d days", "num"),
    "hour": npgettext_lazy("time ago", "%(num)d hour", "%(num)d hours", "num"),
    "minute": npgettext_lazy("time ago", "%(num)d minute", "%(num)d minutes", "num"),
}


def ago(moment: datetime, *, now: datetime | None = None) -> str:
    """How long ago a moment was, for "%(x)s ago": "5 minutes", "1 минуту"."""
    return timesince(moment, now, time_strings=AGO_UNITS)


def day(moment: datetime, *, now: datetime | None = None) -> str:
    """The local date of a moment: "1 Dec", with the year when it is not this one."""
    local = _local(moment)
    return _day(local, timezone.localtime(now or timezone.now()).date())


def _local(moment: datetime) -> datetime:
    try:
        return timezone.localtime(moment)
    except OverflowError:  # a moment at the end of time (an estimate): as it is
        return moment


def _day(local: datetime, today: object) -> str:
    if local.year == getattr(today, "year", local.year):
        # Translators: a Django date format (docs.djangoproject.com/en/5.2/ref/templates/builtins/#date)
        # for a day of this year, e.g. "1 Dec"; Russian "j E" gives "1 декабря".
        fmt = pgettext("date format", "j M")
    else:
        # Translators: as "j M", for a day of another year, e.g. "1 Dec 2025".
        fmt = pgettext("date format", "j M Y")
    return dateformat.format(local, fmt)


def zone_abbreviation(moment: datetime | None = None) -> str:
    """ "MSK", "CET"; "UTC+7" where the zone has no letters of its own
    (Asia/Ho_Chi_Minh calls itself "+07")."""
    local = _local(moment or timezone.now())
    name = local.tzname() or ""
    if name and name[0] not in "+-":
        return name
    minutes = round(local.utcoffset().total_seconds() / 60)
    sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
    hours, rest = divmod(minutes, 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_label(name: str) -> str:
    """ "Europe/Moscow (MSK)": a zone's name with its abbreviation now."""
    with timezone.override(zone_of(name)):
        return f"{zone_name(name)} ({zone_abbreviation()})"


def zone_label_all_year(name: str) -> str:
    """ "Europe/Berlin (CET/CEST)": a zone's name with the abbreviations it
    has over the year, for a time that may fall in either half (a start
    typed in December for June); "Europe/Moscow (MSK)" where it has one."""
    year = timezone.now().year
    with timezone.override(zone_of(name)):
        names = [zone_abbreviation(datetime(year, month, 15, 12, tzinfo=UTC)) for month in (1, 7)]
    return f"{zone_name(name)} ({'/'.join(dict.fromkeys(names))})"
