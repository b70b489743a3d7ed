from django.urls import path

from . import apis, models_api

urlpatterns = [
    path("api/proxy/deepseek/chat", apis.DeepseekChatApi.as_view(), name="proxy-deepseek-chat"),
    path("api/proxy/instantly/send", apis.InstantlySendApi.as_view(), name="proxy-instantly-send"),
    path("api/proxy/usage", apis.UsageApi.as_view(), name="proxy-usage"),
    path("api/proxy/v1/chat/completions", apis.ChatCompletionsApi.as_view(), name="proxy-chat-completions"),
    path("api/proxy/v1/messages", apis.MessagesApi.as_view(), name="proxy-messages"),
    path("api/proxy/v1/responses", apis.ResponsesApi.as_view(), name="proxy-responses"),
    path("api/proxy/v1/embeddings", apis.EmbeddingsApi.as_view(), name="proxy-embeddings"),
    path("api/proxy/v1/models", models_api.ModelListApi.as_view(), name="proxy-models"),
    path("api/proxy/v1/models/<path:model>", models_api.ModelRetrieveApi.as_view(), name="proxy-model"),
    path("api/v2/chat", apis.V2ChatApi.as_view(), name="proxy-v2-chat"),
]
