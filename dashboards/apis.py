"""``GET /api/admin/dashboard``: the operator dashboard as JSON, in the original design's shape
(budget, users, providers, economics, alerts) plus organizations, credits and the business
block (MRR, subscriptions, churn, failed payments). The customer is the workspace: the "users"
block keeps the original design's key names, and each of its numbers counts workspaces.

``GET /api/usage/spend``: the customer's spend overview (``selectors.spend``) for the request's
workspace."""

from __future__ import annotations

from datetime import UTC

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError
from core.schema import error_responses, schema_named
from core.timezones import time_zone_get, viewer_time_zone_get

from .selectors import business, operator, spend


def _usd(**kwargs):
    """USD amounts are JSON numbers, as the original design's clients read them."""
    return serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False, **kwargs)


def _percent(**kwargs):
    return serializers.DecimalField(max_digits=9, decimal_places=2, coerce_to_string=False, **kwargs)


class DashboardBudgetSerializer(serializers.Serializer):
    spent_usd = _usd()
    limit_usd = _usd()
    remaining_usd = _usd()
    percent_used = _percent()
    alert_level = serializers.ChoiceField(choices=["ok", "warning", "critical"])


class DashboardAbusiveWorkspaceSerializer(serializers.Serializer):
    workspace_id = serializers.IntegerField()
    workspace_name = serializers.CharField()
    owner_email = serializers.CharField(
        help_text="A contact: the personal workspace's owner, else its earliest owner (empty if none)."
    )
    requests_today = serializers.IntegerField()
    errors_today = serializers.IntegerField()
    rate_limited_minutes_today = serializers.IntegerField(
        help_text="Minutes today in which one of the workspace's keys went past its per-minute rate limit."
    )
    invalid_key_minutes_today = serializers.IntegerField(
        help_text="Minutes today in which one of the workspace's revoked or expired keys was presented."
    )
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=["requests", "errors", "rate_limited", "invalid_keys"])
    )


class DashboardUsersSerializer(serializers.Serializer):
    """The customers: workspaces (a team counts once, as it pays once)."""

    active_today = serializers.IntegerField(help_text="Workspaces with at least one call today.")
    avg_cost_per_user = _usd(help_text="Operator cost today ÷ active workspaces.")
    abusive_count = serializers.IntegerField(help_text="Workspaces flagged today.")
    abusive_users = DashboardAbusiveWorkspaceSerializer(many=True, help_text="The flagged workspaces.")


class DashboardProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    requests_count = serializers.IntegerField()
    cost_total = _usd()
    tokens = serializers.IntegerField()
    errors_count = serializers.IntegerField()
    error_rate = _percent(help_text="Failed calls / calls, in percent.")
    fallback_count = serializers.IntegerField()


class DashboardProvidersSerializer(serializers.Serializer):
    today = DashboardProviderSerializer(many=True)
    last_30_days = DashboardProviderSerializer(many=True)


class DashboardPlanEconomicsSerializer(serializers.Serializer):
    plan = serializers.CharField()
    revenue_usd = _usd()
    costs_usd = _usd()
    profit_usd = _usd()
    margin_percent = _percent(
        allow_null=True, help_text="Profit / revenue, in percent; null without revenue."
    )


class DashboardProviderEconomicsSerializer(serializers.Serializer):
    provider = serializers.CharField()
    costs_usd = _usd()
    requests_count = serializers.IntegerField()
    share_percent = _percent()
    charge_credits = serializers.IntegerField(
        help_text="Credits charged on the provider's calls (at the endpoints' rates, whoever paid)."
    )
    revenue_usd = _usd(
        allow_null=True,
        help_text=(
            "The range's revenue (cash: subscriptions and credit packs) allocated by the share of "
            "credits charged; the providers' amounts add up to the total. Null when nothing was charged."
        ),
    )
    profit_usd = _usd(allow_null=True, help_text="Allocated revenue - costs; null without an allocation.")
    margin_percent = _percent(
        allow_null=True, help_text="Profit / allocated revenue, in percent; null without allocated revenue."
    )


class DashboardEconomicsSerializer(serializers.Serializer):
    revenue_usd = _usd()
    costs_usd = _usd()
    profit_usd = _usd()
    margin_percent = _percent(allow_null=True)
    by_plan = DashboardPlanEconomicsSerializer(many=True)
    by_provider = DashboardProviderEconomicsSerializer(many=True)


class DashboardAlertSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["warning", "critical"])
    code = serializers.CharField()
    message = serializers.CharField()
    action = serializers.CharField()


class DashboardOrganizationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    instance_url = serializers.CharField()
    subscription_status = serializers.CharField(source="status")
    latest_user_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class DashboardLinkedOrganizationSerializer(DashboardOrganizationSerializer):
    stripe_customer_id = serializers.CharField(allow_null=True)
    stripe_subscription_id = serializers.CharField(allow_null=True)
    deployment_type = serializers.CharField()
    plan_type = serializers.CharField()
    admin_email = serializers.CharField()
    trial_end = serializers.DateTimeField(allow_null=True)


class DashboardOrganizationsSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    linked = serializers.IntegerField()
    pending = serializers.IntegerField()


class DashboardOrganizationsSerializer(serializers.Serializer):
    summary = DashboardOrganizationsSummarySerializer()
    pending = DashboardOrganizationSerializer(many=True)
    linked = DashboardLinkedOrganizationSerializer(many=True)


class DashboardCreditsSerializer(serializers.Serializer):
    upsell_views = serializers.IntegerField()
    buy_clicks = serializers.IntegerField()
    purchases = serializers.IntegerField()
    conversion_percent = _percent(allow_null=True)
    average_basket_usd = _usd(allow_null=True)
    revenue_usd = _usd()
    revenue_per_user_usd = _usd(allow_null=True, help_text="Credit revenue ÷ workspaces that bought credits.")
    webhook_success_rate = _percent(allow_null=True)


class DashboardMrrSerializer(serializers.Serializer):
    by_currency_minor = serializers.DictField(
        child=serializers.IntegerField(), help_text="Monthly recurring revenue per currency, in minor units."
    )
    usd = _usd(help_text="All currencies converted with EXCHANGE_RATES_TO_USD.")


class DashboardPlanSubscriptionsSerializer(serializers.Serializer):
    plan = serializers.CharField()
    name = serializers.CharField()
    paid = serializers.IntegerField(help_text="Active or past-due subscriptions.")
    trials = serializers.IntegerField()
    mrr = DashboardMrrSerializer()
    paid_url = serializers.CharField()
    trials_url = serializers.CharField()


class DashboardFailedPaymentsSerializer(serializers.Serializer):
    transactions = serializers.IntegerField(help_text="Failed payment transactions (either gateway).")
    invoices = serializers.IntegerField(help_text="Stripe invoice.payment_failed events.")
    total = serializers.IntegerField()
    transactions_url = serializers.CharField()
    invoices_url = serializers.CharField()


class DashboardWeekSerializer(serializers.Serializer):
    week = serializers.DateField(help_text="The ISO week's Monday (UTC).")
    mrr = DashboardMrrSerializer()
    paid = serializers.IntegerField()
    trials = serializers.IntegerField()
    live_at_start = serializers.IntegerField()
    churned = serializers.IntegerField()
    churn_percent = _percent(allow_null=True)
    churned_url = serializers.CharField()
    failed_payments = DashboardFailedPaymentsSerializer()


class DashboardChurnSerializer(serializers.Serializer):
    churned = serializers.IntegerField()
    percent = _percent(allow_null=True)
    url = serializers.CharField()


class DashboardBusinessSerializer(serializers.Serializer):
    mrr = DashboardMrrSerializer()
    mrr_url = serializers.CharField()
    paid = serializers.IntegerField()
    paid_url = serializers.CharField()
    trials = serializers.IntegerField()
    trials_url = serializers.CharField()
    by_plan = DashboardPlanSubscriptionsSerializer(many=True)
    churn_this_week = DashboardChurnSerializer()
    failed_this_week = DashboardFailedPaymentsSerializer()
    trend = DashboardWeekSerializer(many=True, help_text="The last 12 ISO weeks, oldest first.")


class DashboardPeriodSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    notes = serializers.ListField(
        child=serializers.CharField(), help_text="Why the asked range was not used."
    )


@schema_named
class OperatorDashboardApi(APIView):
    # Operators use their admin session (or a DRF token), never a customer proxy key.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]

    class OutputSerializer(serializers.Serializer):
        generated_at = serializers.DateTimeField()
        period = DashboardPeriodSerializer(help_text="The range of the economics block.")
        business = DashboardBusinessSerializer()
        budget = DashboardBudgetSerializer()
        users = DashboardUsersSerializer()
        providers = DashboardProvidersSerializer()
        economics = DashboardEconomicsSerializer()
        alerts = DashboardAlertSerializer(many=True)
        organizations = DashboardOrganizationsSerializer()
        credits = DashboardCreditsSerializer()

    @extend_schema(
        operation_id="admin_dashboard",
        summary="Operator dashboard (staff only)",
        description=(
            "Budget, users, providers (today and last 30 days), economics (last 30 days, USD), "
            "alerts, organizations and credit funnel; business: MRR, subscriptions by plan, trials, "
            "churn and failed payments with a 12-week trend. `since`/`until` (YYYY-MM-DD) set the "
            "economics range; bad input gives the last 30 days and a note in `period.notes`. "
            "Non-staff callers get 403."
        ),
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATE, required=False),
            OpenApiParameter("until", OpenApiTypes.DATE, required=False),
        ],
        tags=["admin"],
        responses={200: OutputSerializer, **error_responses(401, 403)},
    )
    def get(self, request):
        now = timezone.now()
        period = business.date_range_parse(
            since=request.query_params.get("since"), until=request.query_params.get("until"), today=now.date()
        )
        data = operator.operator_dashboard_get(now=now, since=period.since, until=period.until)
        data["period"]["notes"] = period.notes
        return Response(self.OutputSerializer(data).data)


class SpendMoneySerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="ISO 4217, lower case.")
    amount = serializers.DecimalField(
        max_digits=30, decimal_places=6, coerce_to_string=False, help_text="In major units of `currency`."
    )
    micros = serializers.IntegerField(help_text="The same, in millionths of the major unit (exact).")


class SpendTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    charge_credits = serializers.IntegerField(help_text="Credits at the endpoints' rates, whoever paid.")
    charge = SpendMoneySerializer(
        source="money", many=True, help_text="The charge in money, per currency (empty without a price)."
    )


class _LocalDateTimeField(serializers.DateTimeField):
    """An instant with the offset of the period's zone (DRF would print it in UTC on APIs)."""

    def to_representation(self, value):
        return value.isoformat()


class SpendBucketSerializer(SpendTotalsSerializer):
    start = _LocalDateTimeField(help_text="The hour's or the day's first instant, in `time_zone`.")


class SpendModelSerializer(SpendTotalsSerializer):
    model = serializers.CharField(help_text="The requested model, or the endpoint of a call without one.")


class SpendKeySerializer(SpendTotalsSerializer):
    key_id = serializers.IntegerField(allow_null=True, help_text="Null: calls made without a key.")
    name = serializers.CharField()
    prefix = serializers.CharField()


@schema_named
class SpendApi(APIView):
    """Proxy key, token or session; the workspace's role must allow ``usage.read``."""

    permission_required = "usage.read"

    class OutputSerializer(serializers.Serializer):
        range = serializers.ChoiceField(choices=[*spend.RANGES, spend.CUSTOM])
        granularity = serializers.ChoiceField(choices=["hour", "day"])
        time_zone = serializers.CharField()
        date_from = serializers.DateField(source="period.since")
        date_to = serializers.DateField(source="period.until")
        totals = SpendTotalsSerializer()
        series = SpendBucketSerializer(source="buckets", many=True)
        by_model = SpendModelSerializer(many=True)
        by_key = SpendKeySerializer(many=True)

    @extend_schema(
        operation_id="usage_spend_get",
        summary="What the workspace's calls were charged, per day, model and key",
        description=(
            "Read from the hourly spend rollup. `range` is `24h` (24 hourly buckets, the current "
            "hour last), `7d` or `30d` (days, today last; the default); or `from` and `to` "
            f"(YYYY-MM-DD, inclusive, at most {spend.MAX_DAYS} days) instead of `range`. Days are "
            "cut in `tz` (an IANA name), else the caller's profile time zone, else UTC. Members "
            "whose role may not manage every key see only the keys they created. Bad parameters "
            "answer 400 `invalid_request` naming `param`."
        ),
        parameters=[
            OpenApiParameter("range", OpenApiTypes.STR, enum=list(spend.RANGES), required=False),
            OpenApiParameter("from", OpenApiTypes.DATE, required=False),
            OpenApiParameter("to", OpenApiTypes.DATE, required=False),
            OpenApiParameter("tz", OpenApiTypes.STR, required=False, description="IANA time zone."),
        ],
        tags=["usage"],
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request):
        context = workspace_context_get(request)
        context.require(self.permission_required)
        params = request.query_params
        if params.get("tz"):
            zone = time_zone_get(params["tz"])
            if zone is None:
                raise ApiError("invalid_request", "tz is not a known time zone.", param="tz")
        else:
            zone = viewer_time_zone_get(user=request.user, cookies=request.COOKIES) or UTC
        period = spend.spend_period_get(
            now=timezone.now(),
            zone=zone,
            range_key=params.get("range"),
            date_from=params.get("from"),
            date_to=params.get("to"),
        )
        created_by = None if context.can("keys.manage_any") else context.user
        summary = spend.spend_summary_get(workspace=context.workspace, period=period, created_by=created_by)
        data = {
            "range": period.range,
            "granularity": "hour" if period.hourly else "day",
            "time_zone": str(zone),
            "period": period,
            "totals": summary.totals,
            "buckets": summary.buckets,
            "by_model": summary.by_model,
            "by_key": summary.by_key,
        }
        return Response(self.OutputSerializer(data).data)
