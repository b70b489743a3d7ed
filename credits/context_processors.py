"""Template context for the credits badge and the low-balance modal on dashboard pages.

Wire it with ``"credits.context_processors.credits_badge"`` in TEMPLATES; the value is lazy,
so pages that do not render the badge pay no query. The balance is the workspace's the page
acts on (``accounts.tenancy``); the modal and the Buy link show only to roles that may buy.
"""

from django.utils.functional import SimpleLazyObject

from accounts.tenancy import workspace_context_get
from core.exceptions import ApiError

from .selectors import credit_balance_get, credit_buy_url, credit_pack_public_list

MODAL_DISMISSED_SESSION_KEY = "credits_modal_dismissed"


def credits_badge_data(request) -> dict | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    try:
        context = workspace_context_get(request)
    except ApiError:  # an X-Workspace header naming a workspace the user is not in: no badge
        return None
    balance = credit_balance_get(workspace=context.workspace)
    can_buy = context.can("billing.manage")
    show_modal = (
        can_buy
        and balance.is_low
        and balance.balance > 0
        and not request.session.get(MODAL_DISMISSED_SESSION_KEY, False)
    )
    return {
        "balance": balance.balance,
        "available": balance.available,
        "is_low": balance.is_low,
        "low_threshold": balance.low_threshold,
        "can_buy": can_buy,
        "show_modal": show_modal,
        "buy_url": credit_buy_url(),
        "packs": SimpleLazyObject(credit_pack_public_list) if show_modal else [],
    }


def credits_badge(request) -> dict:
    return {"credits_badge": SimpleLazyObject(lambda: credits_badge_data(request))}
