from django.urls import include, path

from . import apis, views

api_patterns = [
    path("plans", apis.PlanListApi.as_view(), name="plans"),
    path("checkout", apis.CheckoutStartApi.as_view(), name="checkout"),
    path("webhook", apis.StripeWebhookApi.as_view(), name="webhook"),
    path("subscription", apis.SubscriptionApi.as_view(), name="subscription"),
    path("portal", apis.PortalApi.as_view(), name="portal"),
]

page_patterns = [
    path("pricing/", views.pricing_page, name="pricing"),
    path("billing/upgrade/<slug:code>/", views.plan_upgrade, name="upgrade"),
    path("billing/portal/", views.billing_portal_redirect, name="portal"),
    path("billing/success/", views.checkout_success_page, name="success"),
    path("billing/cancel/", views.checkout_cancel_page, name="cancel"),
    path(
        "billing/simulated-checkout/<str:session_id>/",
        views.simulated_checkout_page,
        name="simulated-checkout",
    ),
    path("billing/simulated-portal/", views.simulated_portal_page, name="simulated-portal"),
    # Chargily Pay (paths fixed by the original design's clients).
    path(
        "payment/subscribe/<slug:plan_code>", apis.ChargilySubscribeApi.as_view(), name="chargily-subscribe"
    ),
    path("payment/webhook/chargily", apis.ChargilyWebhookApi.as_view(), name="chargily-webhook"),
    path("payment/subscription/status", apis.SubscriptionStatusApi.as_view(), name="subscription-status"),
    path(
        "payment/chargily/simulated-checkout/<str:reference>/",
        views.chargily_simulated_checkout_page,
        name="chargily-simulated-checkout",
    ),
]

urlpatterns = [
    path("api/billing/", include((api_patterns, "billing"), namespace="billing-api")),
    path("", include((page_patterns, "billing"), namespace="billing")),
]
