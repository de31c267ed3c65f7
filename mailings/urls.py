from django.urls import path

from mailings import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
