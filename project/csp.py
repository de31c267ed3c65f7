"""
django-csp's middleware, for responses that bring their own policy.

The supporter pages (/join/, links from emails, action pages) set a stricter
policy of their own; django-csp builds the site's policy for every response
before it looks whether one is already there, which costs more than serving
a cached action page does.
"""

from csp.constants import HEADER
from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from django.conf import settings


class CSPMiddleware(BaseCSPMiddleware):
    def process_response(self, request, response):
        report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        if HEADER in response and not report_only:
            return response
        return super().process_response(request, response)
