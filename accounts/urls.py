from django.contrib.auth import views as auth_views
from django.urls import path

from . import apis, views, workspace_urls

app_name = "accounts"

api_urlpatterns = [
    path("api/auth/register", apis.RegisterApi.as_view(), name="api-register"),
    path("api/auth/token", apis.TokenApi.as_view(), name="api-token"),
    path("api/keys", apis.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api/keys/<int:key_id>", apis.ApiKeyDeleteApi.as_view(), name="api-key"),
    path("api/keys/<int:key_id>/rotate", apis.ApiKeyRotateApi.as_view(), name="api-key-rotate"),
    path("api/provider-keys", apis.ProviderKeyListApi.as_view(), name="api-provider-keys"),
    path("api/provider-keys/<str:provider>", apis.ProviderKeyWorkspaceApi.as_view(), name="api-provider-key"),
    path(
        "api/admin/provider-keys/<str:provider>",
        apis.ProviderKeyGlobalApi.as_view(),
        name="api-admin-provider-key",
    ),
]

web_urlpatterns = [
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/verify-email/resend/", views.email_verification_resend, name="email-verify-resend"),
    path("accounts/verify-email/<str:token>/", views.email_verify, name="email-verify"),
    path(
        "accounts/password-reset/",
        views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path(
        "accounts/password-reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # ``accounts:dashboard`` names the Overview (dashboards' view, included first in config.urls).
    path("dashboard/", views.keys_page, name="dashboard"),
    path("keys/", views.keys_page, name="keys"),
    path("dashboard/keys/", views.dashboard_key_create, name="dashboard-key-create"),
    path("dashboard/keys/<int:key_id>/revoke/", views.dashboard_key_revoke, name="dashboard-key-revoke"),
    path("dashboard/keys/<int:key_id>/rotate/", views.dashboard_key_rotate, name="dashboard-key-rotate"),
    path("dashboard/keys/reveal/<str:token>/", views.key_reveal, name="key-reveal"),
]

# The workspaces' own URLs (members, invitations, audit; ``accounts.workspace_urls``) share the namespace.
urlpatterns = api_urlpatterns + web_urlpatterns + workspace_urls.urlpatterns
