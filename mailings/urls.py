from django.urls import path

from mailings import home, views
from mailings.composer import public as newsletters

urlpatterns = [
    path("", home.home, name="home"),
    path("favicon.ico", home.favicon),
    # Public supporter pages (docs/self-service.md).
    path("join/", views.signup, name="signup"),
    path("join/confirm/<str:token>/", views.signup_confirm, name="signup-confirm"),
    path("preferences/", views.link_request, name="link-request"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path(
        "preferences/<str:token>/unsubscribe-all/",
        views.preferences_unsubscribe_all,
        name="preferences-unsubscribe-all",
    ),
    path(
        "preferences/<str:token>/resubscribe/",
        views.preferences_resubscribe,
        name="preferences-resubscribe",
    ),
    path("preferences/<str:token>/my-data/", views.preferences_data, name="preferences-data"),
    path("my-data/<str:token>/", views.data_download, name="data-download"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    # Newsletters on the web: the archive, each one's web copy, composer images.
    path("newsletters/", newsletters.archive, name="newsletter-archive"),
    path("newsletters/images/<str:name>", newsletters.image, name="newsletter-image"),
    path("newsletters/<str:public_id>/", newsletters.web_copy, name="newsletter-web-copy"),
]
