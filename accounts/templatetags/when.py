"""The one way templates show a moment: {{ letter.sent_at|when }} gives
"today at 10:01", "tomorrow at 10:01" or "1 Dec at 10:01" in the tenant's
zone; {{ mailing.scheduled_at|when:"zone" }} adds the zone ("… MSK") where a
time could be misread. A builtin (config.settings): no {% load %} needed."""

from datetime import datetime

from django import template

from .. import timezones

register = template.Library()


@register.filter
def when(moment: datetime | None, option: str = "") -> str:
    if not isinstance(moment, datetime):
        return ""
    return timezones.when(moment, zone=option == "zone")


@register.simple_tag
def zone_abbreviation() -> str:
    return timezones.zone_abbreviation()


@register.filter
def zone_name(name: str) -> str:
    """ "Asia/Ho Chi Minh" for Asia/Ho_Chi_Minh, as the zone select says it."""
    return timezones.zone_name(str(name))
