import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_wsgi_application()

# A request makes thousands of short-lived objects (a form's fields, model
# instances, template contexts), so Python's default (a collection of the
# youngest objects every 700 allocations) spent about a sixth of a signature's
# CPU collecting (docs/performance.md, "Action pages"). Most of them are freed
# by reference counting anyway; collecting every 10,000 keeps the collector
# for the cycles it is there for.
gc.set_threshold(10_000, 10, 10)
