"""/api/: the REST API's routes, its OpenAPI schema (/api/openapi.json) and docs (/api/docs)."""

from project.api.views import api

app_name = "api"
urlpatterns = api.urls[0]
