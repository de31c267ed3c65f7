from django.urls import path

from mailings.actions import views

urlpatterns = [
    path("confirm/<str:token>/", views.action_confirm, name="action-confirm"),
    path("<slug:slug>/", views.action_page, name="action"),
    path("<slug:slug>/embed/", views.action_embed, name="action-embed"),
]
