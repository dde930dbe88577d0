"""The one way templates show a moment: {{ letter.sent_at|when }} gives
"today at 10:01", "tomorrow at 10:01" or "1 Dec at 10:01" in the tenant's
zone; {{ mailing.scheduled_at|when:"zone" }} adds the zone ("… MSK") where a
time could be misread; {{ contact_list.created_at|day }} gives the day alone
("5 Dec", "5 декабря 2025", "5/12/2025"), in the catalogue's date formats
rather than a fixed `|date:"j M Y"` (Russian "5 Дек 2025"); {{ x|ago }}
inside "{{ … }} ago" is how long ago ("1 минуту", never |timesince's
"1 минута"). A builtin
(config.settings): no {% load %} needed."""

from datetime import datetime

from django import template

from .. import timezones

register = template.Library()


@register.filter
def when(moment: datetime | None, option: str = "") -> str:
    if not isinstance(moment, datetime):
        return ""
    return timezones.when(moment, zone=option == "zone")


@register.filter
def day(moment: datetime | None) -> str:
    if not isinstance(moment, datetime):
        return ""
    return timezones.day(moment)


@register.filter
def ago(moment: datetime | None) -> str:
    """For "{{ x }} ago": timesince with the units said as "ago" needs them
    ("1 минуту назад"; a bare |timesince says "1 минута назад")."""
    if not isinstance(moment, datetime):
        return ""
    return timezones.ago(moment)


@register.simple_tag
def zone_abbreviation() -> str:
    return timezones.zone_abbreviation()


@register.filter
def zone_name(name: str) -> str:
    """ "Asia/Ho Chi Minh" for Asia/Ho_Chi_Minh, as the zone select says it."""
    return timezones.zone_name(str(name))
