from django.urls import include, path

from . import apis, grant_apis, views

api_patterns = [
    path("balance", apis.CreditBalanceApi.as_view(), name="balance"),
    path("packs", apis.CreditPackListApi.as_view(), name="packs"),
    path("transactions", apis.CreditTransactionListApi.as_view(), name="transactions"),
    path("transactions/<int:entry_id>", apis.CreditTransactionDetailApi.as_view(), name="transaction"),
    path("check", apis.CreditCheckApi.as_view(), name="check"),
    path("consume", apis.CreditConsumeApi.as_view(), name="consume"),
    path("buy", apis.CreditBuyApi.as_view(), name="buy"),
    path("auto-top-up", apis.CreditAutoTopUpApi.as_view(), name="auto-top-up"),
    path("grants", grant_apis.CreditGrantCreateApi.as_view(), name="grants"),
    path("lots", grant_apis.CreditLotListApi.as_view(), name="lots"),
]

page_patterns = [
    path("", views.credits_page, name="page"),
    path("buy/<slug:code>/", views.credit_pack_buy, name="buy"),
    path("auto-top-up/", views.credit_auto_top_up_save, name="auto-top-up"),
    path("modal/dismiss/", views.credit_modal_dismiss, name="modal-dismiss"),
    path("modal/seen/", views.credit_modal_seen, name="modal-seen"),
]

urlpatterns = [
    path("api/credits/", include((api_patterns, "credits"), namespace="credits-api")),
    path("credits/", include((page_patterns, "credits"), namespace="credits")),
]
