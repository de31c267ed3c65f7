"""
The Jinja2 environment for the supporter pages (templates/jinja2/).

Supporters reach these pages from every email, in bursts after each
newsletter; Jinja2 renders them several times faster than Django's template
language. Staff pages and emails keep Django's templates.
"""

import functools

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.templatetags.static import static
from django.urls import reverse
from jinja2 import Environment


@functools.lru_cache(maxsize=256)
def static_url(path):
    """{{ static('rally.css') }}: the file's URL, looked up in the manifest once per process."""
    return static(path)


@receiver(setting_changed)
def _static_settings_changed(*, setting, **kwargs):
    if setting in ("STATIC_URL", "STORAGES"):
        static_url.cache_clear()


def url(name, *args):
    """{{ url('preferences', token) }}: Django's reverse() for a named URL."""
    return reverse(name, args=args)


def environment(**options):
    # Django asks for autoescaping already; the supporter pages show what people typed.
    options["autoescape"] = True
    env = Environment(**options)  # noqa: S701 (autoescape is on, the line above)
    env.globals.update(static=static_url, url=url)
    return env
