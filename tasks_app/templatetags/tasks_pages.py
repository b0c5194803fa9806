"""Template helpers for the public pages."""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def local_time(iso: str | None) -> str:
    """An API time ('2026-12-06T04:59:28.485156Z') as a <time> for people; times.js puts it in their zone."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        return iso
    return format_html('<time datetime="{}">{} UTC</time>', iso, f"{moment:%-d %b %Y, %H:%M:%S}")
