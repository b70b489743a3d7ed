"""The operator's customer page ("workspace 360"), a URL of the admin site: everything about one
workspace on one page, and the actions that run the business with it.

``/admin/customers/<id>/`` (GET) needs ``accounts.view_workspace``; each action is a POST to
``/admin/customers/<id>/<action>/`` that needs ``accounts.change_workspace``, calls one service
(which writes the audit event, the operator as actor, with the reason) and redirects back with a
message (Post/Redirect/Get). The admin site wraps both in ``admin_view``: staff login and CSRF.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Workspace
from accounts.services.suspension import workspace_reinstate, workspace_suspend
from billing.operator_plan import plan_change_by_operator
from billing.services.quota_reset import quota_period_reset
from core.exceptions import ApiError
from credits.services import credit_grant
from credits.services.adjustments import credit_revoke

from .selectors.workspace import workspace_360_get

VIEW_PERMISSION = "accounts.view_workspace"
ACTION_PERMISSION = "accounts.change_workspace"


class ReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=500, strip=True)


class CreditGrantForm(ReasonForm):
    credits = forms.IntegerField(label=gettext_lazy("Credits"), min_value=1, max_value=1_000_000)
    expires_in_days = forms.IntegerField(
        label=gettext_lazy("Expires in days"), min_value=1, max_value=3650, required=False
    )
    # One per rendered form: a double submit grants once (the ledger's idempotency key).
    nonce = forms.UUIDField()


class CreditRevokeForm(ReasonForm):
    credits = forms.IntegerField(label=gettext_lazy("Credits"), min_value=1, max_value=1_000_000_000)
    nonce = forms.UUIDField()


class PlanChangeForm(ReasonForm):
    plan = forms.SlugField(label=gettext_lazy("Plan"), max_length=40)


class ReinstateForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Note"), max_length=500, strip=True, required=False)


def _workspace_get(workspace_id: int) -> Workspace:
    workspace = Workspace.objects.select_related("personal_owner").filter(pk=workspace_id).first()
    if workspace is None:
        raise Http404("No such workspace.")
    return workspace


def workspace_360(request, workspace_id: int):
    """The customer page (wrapped by ``admin_view``)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    workspace = _workspace_get(workspace_id)
    context = {
        **admin.site.each_context(request),
        "title": _("Customer: %(name)s") % {"name": workspace.name},
        "data": workspace_360_get(workspace=workspace),
        "can_act": request.user.has_perm(ACTION_PERMISSION),
        "nonce": uuid.uuid4(),
    }
    return render(request, "admin/workspace_360.html", context)


# --- Actions ----------------------------------------------------------------------------------


def _grant(request, workspace: Workspace, data: dict) -> str:
    days = data.get("expires_in_days")
    entry = credit_grant(
        workspace=workspace,
        amount=data["credits"],
        admin_user=request.user,
        reason=data["reason"],
        expires_at=timezone.now() + timedelta(days=days) if days else None,
        idempotency_key=f"grant:admin360:{workspace.pk}:{data['nonce']}",
        request=request,
    )
    return _("Granted %(credits)s credits; the balance is %(balance)s.") % {
        "credits": entry.amount,
        "balance": entry.balance_after,
    }


def _revoke(request, workspace: Workspace, data: dict) -> str:
    credit_revoke(
        workspace=workspace,
        amount=data["credits"],
        admin_user=request.user,
        reason=data["reason"],
        idempotency_key=f"revoke:admin360:{workspace.pk}:{data['nonce']}",
        request=request,
    )
    return _("Took back %(credits)s credits.") % {"credits": data["credits"]}


def _quota_reset(request, workspace: Workspace, data: dict) -> str:
    reset = quota_period_reset(
        workspace=workspace, actor=request.user, reason=data["reason"], request=request
    )
    if not reset:
        return _("Nothing was used in the current periods; the reset is recorded.")
    used = ", ".join(
        _("%(meter)s (%(used)s used)") % {"meter": meter, "used": n} for meter, n in reset.items()
    )
    return _("Reset the current periods: %(periods)s") % {"periods": used}


def _plan_change(request, workspace: Workspace, data: dict) -> str:
    plan = plan_change_by_operator(
        workspace=workspace,
        plan_code=data["plan"],
        actor=request.user,
        reason=data["reason"],
        request=request,
    )
    return _("The plan is now %(plan)s.") % {"plan": plan.name}


def _suspend(request, workspace: Workspace, data: dict) -> str:
    workspace_suspend(workspace=workspace, reason=data["reason"], actor=request.user, request=request)
    return _("The workspace is suspended: its keys answer 403 workspace_suspended.")


def _reinstate(request, workspace: Workspace, data: dict) -> str:
    workspace_reinstate(workspace=workspace, actor=request.user, reason=data["reason"], request=request)
    return _("The workspace is reinstated: its keys work again.")


ACTIONS = {
    "grant-credits": (CreditGrantForm, _grant),
    "revoke-credits": (CreditRevokeForm, _revoke),
    "reset-quota": (ReasonForm, _quota_reset),
    "change-plan": (PlanChangeForm, _plan_change),
    "suspend": (ReasonForm, _suspend),
    "reinstate": (ReinstateForm, _reinstate),
}


def workspace_360_action(request, workspace_id: int, action: str):
    """One action of the customer page (POST only), then back to the page with a message."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(ACTION_PERMISSION):
        raise PermissionDenied
    if action not in ACTIONS:
        raise Http404("No such action.")
    workspace = _workspace_get(workspace_id)
    form_class, run = ACTIONS[action]
    form = form_class(request.POST)
    if not form.is_valid():
        errors = "; ".join(
            f"{form.fields[field].label if field in form.fields else field}: {' '.join(errs)}"
            for field, errs in form.errors.items()
        )
        messages.error(
            request, _("Nothing done (%(action)s): %(reason)s") % {"action": action, "reason": errors}
        )
    else:
        try:
            messages.success(request, run(request, workspace, form.cleaned_data))
        except ApiError as error:
            # The service's reason stays in English (as the API says it).
            messages.error(
                request,
                _("Nothing done (%(action)s): %(reason)s") % {"action": action, "reason": error.message},
            )
    return HttpResponseRedirect(reverse("admin:workspace-360", args=[workspace.pk]) + f"#{action}")
