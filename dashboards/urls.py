from django.urls import path

from . import apis, views

app_name = "dashboards"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("docs/", views.api_guide, name="docs"),
    path("metrics", views.metrics, name="metrics"),
    path("api/admin/dashboard", apis.OperatorDashboardApi.as_view(), name="api-admin-dashboard"),
]
