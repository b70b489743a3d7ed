"""Workspace URLs: the API under /api/workspaces and /api/invitations, the pages under
/workspaces/ and /invitations/. No ``app_name``: ``accounts/urls.py`` adds these patterns to its
own, so every name is ``accounts:<name>``."""

from django.urls import path

from . import workspace_apis as apis
from . import workspace_views as views

api_urlpatterns = [
    path("api/workspaces", apis.WorkspaceListCreateApi.as_view(), name="api-workspaces"),
    path("api/workspaces/<int:workspace_id>", apis.WorkspaceDetailApi.as_view(), name="api-workspace"),
    path(
        "api/workspaces/<int:workspace_id>/members",
        apis.MemberListApi.as_view(),
        name="api-workspace-members",
    ),
    path(
        "api/workspaces/<int:workspace_id>/members/<int:user_id>",
        apis.MemberDetailApi.as_view(),
        name="api-workspace-member",
    ),
    path(
        "api/workspaces/<int:workspace_id>/invitations",
        apis.InvitationListCreateApi.as_view(),
        name="api-workspace-invitations",
    ),
    path(
        "api/workspaces/<int:workspace_id>/invitations/<int:invitation_id>",
        apis.InvitationDetailApi.as_view(),
        name="api-workspace-invitation",
    ),
    path(
        "api/workspaces/<int:workspace_id>/audit",
        apis.AuditEventListApi.as_view(),
        name="api-workspace-audit",
    ),
    path("api/invitations/accept", apis.InvitationAcceptApi.as_view(), name="api-invitation-accept"),
]

web_urlpatterns = [
    path("workspaces/new/", views.workspace_new, name="workspace-new"),
    path("workspaces/switch/", views.workspace_switch, name="workspace-switch"),
    path("workspaces/<int:workspace_id>/members/", views.workspace_members, name="workspace-members"),
    path("workspaces/<int:workspace_id>/audit/", views.workspace_audit, name="workspace-audit"),
    path("workspaces/<int:workspace_id>/members/invite/", views.workspace_invite, name="workspace-invite"),
    path(
        "workspaces/<int:workspace_id>/members/<int:user_id>/role/",
        views.workspace_member_role,
        name="workspace-member-role",
    ),
    path(
        "workspaces/<int:workspace_id>/members/<int:user_id>/limits/",
        views.workspace_member_limits,
        name="workspace-member-limits",
    ),
    path(
        "workspaces/<int:workspace_id>/members/<int:user_id>/remove/",
        views.workspace_member_remove,
        name="workspace-member-remove",
    ),
    path(
        "workspaces/<int:workspace_id>/invitations/<int:invitation_id>/revoke/",
        views.workspace_invitation_revoke,
        name="workspace-invitation-revoke",
    ),
    path("invitations/accept/<str:token>/", views.invitation_accept_page, name="invitation-accept"),
]

urlpatterns = api_urlpatterns + web_urlpatterns
