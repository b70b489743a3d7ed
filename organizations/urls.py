from django.urls import path

from . import apis

app_name = "organizations"

urlpatterns = [
    path("api/usage-report", apis.UsageReportApi.as_view(), name="usage-report"),
    path("api/admin/organizations", apis.OrganizationListApi.as_view(), name="admin-organizations"),
    path(
        "api/admin/organizations/<str:organization_id>/link",
        apis.OrganizationLinkApi.as_view(),
        name="admin-organization-link",
    ),
]
