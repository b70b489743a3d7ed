"""Credits pages: the /credits/ upsell page, Buy buttons, and the low-balance modal's doors.

They act on the workspace chosen in the switcher (``accounts.tenancy``): every member sees its
balance and history; only roles with ``billing.manage`` see and use the Buy buttons.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from accounts.tenancy import page_context_get
from core.exceptions import ApiError

from .context_processors import MODAL_DISMISSED_SESSION_KEY, credits_badge_data
from .models import CreditLot, LedgerEntry, UpsellEvent
from .selectors import auto_top_up_get, credit_history_list, credit_pack_offer_list, endpoint_price_list
from .services import auto_top_up_update, credit_lots_get, credit_pack_checkout_start, upsell_event_record

HISTORY_ROWS = 50
CREDITS_EXPLAINED = 100  # "what 100 credits buy"

# The page's names for the ledger's and the lots' kinds (the models' choices stay English: the
# admin, CSV and API use them).
ENTRY_KIND_LABELS = {
    LedgerEntry.Kind.PURCHASE: pgettext_lazy("credit movement", "Purchase"),
    LedgerEntry.Kind.CONSUME: pgettext_lazy("credit movement", "Consumption"),
    LedgerEntry.Kind.REFUND: pgettext_lazy("credit movement", "Refund"),
    LedgerEntry.Kind.GRANT: pgettext_lazy("credit movement", "Grant (admin)"),
    LedgerEntry.Kind.ADJUSTMENT: pgettext_lazy("credit movement", "Adjustment"),
    LedgerEntry.Kind.EXPIRY: pgettext_lazy("credit movement", "Expiry"),
}
LOT_KIND_LABELS = {
    CreditLot.Kind.PROMOTIONAL: gettext_lazy("Promotional"),
    CreditLot.Kind.PAID: gettext_lazy("Paid"),
}


@login_required
@require_GET
def credits_page(request):
    workspace_context = page_context_get(request)
    workspace_context.require_page("usage.read")
    upsell_event_record(workspace=workspace_context.workspace, kind=UpsellEvent.Kind.VIEW)
    context = {
        "offers": credit_pack_offer_list(),
        "endpoint_prices": endpoint_price_list(budget=CREDITS_EXPLAINED),
        "history": [
            {
                "entry": row.entry,
                "receipt": row.receipt,
                "kind_label": ENTRY_KIND_LABELS.get(row.entry.kind, row.entry.kind),
            }
            for row in credit_history_list(workspace=workspace_context.workspace, limit=HISTORY_ROWS)
        ],
        "lots": [
            {"lot": lot, "kind_label": LOT_KIND_LABELS.get(lot.kind, lot.kind)}
            for lot in credit_lots_get(workspace=workspace_context.workspace)
        ],
        "purchase_status": request.GET.get("purchase", ""),
        # The page works even before the lead wires the context processor into settings.
        "credits_badge": credits_badge_data(request),
        "workspace_context": workspace_context,
        "perms_ws": workspace_context.permissions,
        "auto_top_up": (
            auto_top_up_get(workspace=workspace_context.workspace)
            if workspace_context.can("billing.read")
            else None
        ),
    }
    return render(request, "credits/credits.html", context)


@login_required
@require_POST
def credit_pack_buy(request, code: str):
    """A Buy button: open the checkout (Stripe, or Chargily Pay in DZD when the button says
    ``gateway=chargily``) for the workspace and send the browser there (403 for a role that
    may not buy)."""
    workspace_context = page_context_get(request)
    workspace_context.require_page("billing.manage")
    back = request.build_absolute_uri(reverse("credits:page"))
    try:
        session = credit_pack_checkout_start(
            workspace=workspace_context.workspace,
            actor=workspace_context.user,
            pack_code=code,
            success_url=f"{back}?purchase=success",
            cancel_url=f"{back}?purchase=cancelled",
            gateway=request.POST.get("gateway") or "stripe",  # billing refuses unknown gateways
        )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("credits:page")
    return redirect(session["checkout_url"])


def _form_int(request, name: str) -> int | None:
    value = (request.POST.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ApiError("invalid_request", "Enter a whole number.", param=name)
    return int(value)


@login_required
@require_POST
def credit_auto_top_up_save(request):
    """The auto top-up form (``billing.manage``): save, then back to the page (PRG)."""
    workspace_context = page_context_get(request)
    workspace_context.require_page("billing.manage")
    try:
        auto_top_up_update(
            workspace=workspace_context.workspace,
            actor=workspace_context.user,
            is_enabled=request.POST.get("enabled") == "on",
            pack_code=request.POST.get("pack") or None,
            threshold_credits=_form_int(request, "threshold_credits"),
            max_per_month=_form_int(request, "max_per_month"),
            request=request,
        )
    except ApiError as exc:
        # The reason is the service's (English, as the API says it).
        messages.error(request, _("Auto top-up not saved: %(reason)s") % {"reason": exc.message})
    else:
        messages.success(request, _("Auto top-up saved."))
    return redirect(f"{reverse('credits:page')}#auto-top-up")


credit_auto_top_up_save.permission_required = {"post": "billing.manage"}


@login_required
@require_POST
def credit_modal_dismiss(request):
    """Hide the low-balance modal for the rest of this session."""
    request.session[MODAL_DISMISSED_SESSION_KEY] = True
    if request.headers.get("X-Requested-With") == "fetch":
        return HttpResponse(status=204)
    next_url = request.POST.get("next", "")
    return redirect(next_url if next_url.startswith("/") and not next_url.startswith("//") else "/dashboard/")


@login_required
@require_POST
def credit_modal_seen(request):
    """The modal was shown (posted once per browser session by credits.js)."""
    if request.POST.get("kind") != UpsellEvent.Kind.MODAL_VIEW:
        return HttpResponseBadRequest("unknown kind")
    upsell_event_record(workspace=page_context_get(request).workspace, kind=UpsellEvent.Kind.MODAL_VIEW)
    return HttpResponse(status=204)
