from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Rally"
admin.site.site_title = "Rally"
admin.site.index_title = "Supporters and mailings"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("anymail/", include("anymail.urls")),
    path("", include("mailings.urls")),
]
