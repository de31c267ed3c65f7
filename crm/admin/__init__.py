"""
The CRM in the staff admin (Django's admin site, one module per subject):

    common       the paginator that estimates past 10,000 rows; read-only admins
    supporters   the supporter list, its filters and bulk actions, a supporter's page
                 and its GDPR views (export, erase, revoke links)
    segments     static and rule-based segments, their size and members
    sync         partner lists: import (columns, preview, confirm), export, the partner
                 sync file
    batches      import batches: progress, report, full preview, revert
    reference    interests, partners, tags, suppressions, consent records, audit events

Every write goes through crm.services; the admin only asks and shows.
"""

from crm.admin import reference, segments, supporters, sync  # noqa: F401  (registers the admins)
