from django.contrib import admin
from django.urls import include, path

from project.health import healthz

admin.site.site_header = "Rally"
admin.site.site_title = "Rally"
admin.site.index_title = "Supporters and mailings"
admin.site.site_url = "/"  # "View site": the home page (mailings.home)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Anymail's webhooks, each behind a guard (size limit, 401/403, 400 for junk).
    path("anymail/", include("mailings.webhooks")),
    path("api/", include("project.api.urls")),
    path("act/", include("mailings.actions.urls")),
    path("", include("mailings.urls")),
]
