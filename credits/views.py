"""Credits pages: the /credits/ upsell page, Buy buttons, and the low-balance modal's doors."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.exceptions import ApiError

from .context_processors import MODAL_DISMISSED_SESSION_KEY, credits_badge_data
from .models import UpsellEvent
from .selectors import credit_ledger_list, credit_pack_offer_list
from .services import credit_pack_checkout_start, upsell_event_record

HISTORY_ROWS = 50


@login_required
@require_GET
def credits_page(request):
    upsell_event_record(user=request.user, kind=UpsellEvent.Kind.VIEW)
    context = {
        "offers": credit_pack_offer_list(),
        "entries": credit_ledger_list(user=request.user)[:HISTORY_ROWS],
        "purchase_status": request.GET.get("purchase", ""),
        # The page works even before the lead wires the context processor into settings.
        "credits_badge": credits_badge_data(request),
    }
    return render(request, "credits/credits.html", context)


@login_required
@require_POST
def credit_pack_buy(request, code: str):
    """A Buy button: open the checkout (Stripe, or Chargily Pay in DZD when the button says
    ``gateway=chargily``) and send the browser there."""
    back = request.build_absolute_uri(reverse("credits:page"))
    try:
        session = credit_pack_checkout_start(
            user=request.user,
            pack_code=code,
            success_url=f"{back}?purchase=success",
            cancel_url=f"{back}?purchase=cancelled",
            gateway=request.POST.get("gateway") or "stripe",  # billing refuses unknown gateways
        )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("credits:page")
    return redirect(session["checkout_url"])


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
    upsell_event_record(user=request.user, kind=UpsellEvent.Kind.MODAL_VIEW)
    return HttpResponse(status=204)
