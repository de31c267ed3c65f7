from django.urls import path

from mailings import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
