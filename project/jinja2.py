"""
The Jinja2 environment for the supporter pages (templates/jinja2/).

Supporters reach these pages from every email, in bursts after each
newsletter; Jinja2 renders them several times faster than Django's template
language. Staff pages and emails keep Django's templates.
"""

from django.templatetags.static import static
from django.urls import reverse
from jinja2 import Environment


def url(name, *args):
    """{{ url('preferences', token) }}: Django's reverse() for a named URL."""
    return reverse(name, args=args)


def environment(**options):
    # Django asks for autoescaping already; the supporter pages show what people typed.
    options["autoescape"] = True
    env = Environment(**options)  # noqa: S701 (autoescape is on, the line above)
    env.globals.update(static=static, url=url)
    return env
