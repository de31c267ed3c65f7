"""What the staff admin's lists share: a paginator for large tables, and read-only admins."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from crm.estimates import estimated_count


class EstimatingPaginator(Paginator):
    """Count a list exactly up to EXACT_UP_TO rows; past that, take PostgreSQL's estimate.

    Counting stops at EXACT_UP_TO + 1 rows, so a page of a million supporters
    never reads them all; the count shown is then PostgreSQL's estimate
    (crm.estimates), which templates/admin/pagination.html calls "about"
    so many. Other databases (SQLite in development) count exactly.
    """

    EXACT_UP_TO = 10_000
    estimates = True  # the admin's templates show count_text for this paginator

    @cached_property
    def _counted(self) -> tuple[int, bool]:
        # Unordered: the list's order would make PostgreSQL walk the rows in that
        # order to find the first so many (ten times slower under a filter).
        exact = self.object_list.order_by()[: self.EXACT_UP_TO + 1].count()
        if exact <= self.EXACT_UP_TO:
            return exact, False
        estimate = estimated_count(self.object_list)
        if estimate is None:
            return self.object_list.count(), False
        # Statistics older than the table's growth may say fewer than were just counted.
        return max(estimate, self.EXACT_UP_TO + 1), True

    @property
    def count(self):
        return self._counted[0]

    @property
    def estimated(self) -> bool:
        return self._counted[1]

    @property
    def count_text(self) -> str:
        """Return "2,000", or past EXACT_UP_TO "about 120,000" or "about 1.2 million"."""
        count = self.count
        if not self.estimated:
            return f"{count:,}"
        if count >= 1_000_000:
            return f"about {count / 1_000_000:.1f}".removesuffix(".0") + " million"
        return f"about {round(count, 2 - len(str(count))):,}"


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records only services write (consent, audit, deliveries): staff look, never touch."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
