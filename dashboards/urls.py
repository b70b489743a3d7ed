from django.urls import path

from . import activity_views, apis, billing_views, views

app_name = "dashboards"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("billing/", billing_views.billing_page, name="billing"),
    path("activity/", activity_views.activity, name="activity"),
    path("activity/export.csv", activity_views.activity_export, name="activity-export"),
    path("activity/<uuid:call_id>/", activity_views.activity_detail, name="activity-detail"),
    path("docs/", views.api_guide, name="docs"),
    path("metrics", views.metrics, name="metrics"),
    path("api/admin/dashboard", apis.OperatorDashboardApi.as_view(), name="api-admin-dashboard"),
    path("api/usage/spend", apis.SpendApi.as_view(), name="api-usage-spend"),
]
