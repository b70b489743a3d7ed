"""Which workspace a request acts on, and as what role: one answer for the API, the pages and
the proxy.

- A proxy key (``Authorization: Bearer sk_agentai_…``) acts on its own workspace, with the role
  of the member who created it.
- Token or session auth acts on the workspace named by the ``X-Workspace`` header (id or slug);
  pages use the one chosen in the switcher (kept in the session); else the personal workspace.
- A workspace the caller does not belong to answers 404 (its existence is not disclosed); a
  role that may not do an action answers ``403 {"error": {"code": "forbidden",
  "required_role": [...]}}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404

from core.exceptions import ApiError

from .models import Membership, User, Workspace
from .roles import role_can, role_permissions, roles_allowed

WORKSPACE_HEADER = "HTTP_X_WORKSPACE"
SESSION_WORKSPACE_KEY = "workspace_id"


@dataclass(frozen=True)
class WorkspaceContext:
    """The workspace a request acts on, the acting user and their role in it."""

    workspace: Workspace
    user: User
    role: str

    def can(self, action: str) -> bool:
        return role_can(self.role, action)

    @property
    def permissions(self) -> frozenset[str]:
        """Every action the role may do: templates test ``{% if "keys.manage_any" in perms_ws %}``
        (they cannot call ``can`` with an argument)."""
        return frozenset(role_permissions(self.role))

    def require(self, action: str) -> None:
        """403 ``forbidden`` (with the roles that may) unless the role may do ``action``."""
        if not self.can(action):
            allowed = roles_allowed(action)
            raise ApiError(
                "forbidden",
                f"Your role ({self.role}) may not do this in this workspace; it needs: {', '.join(allowed)}.",
                required_role=allowed,
            )

    def require_page(self, action: str) -> None:
        """The page flavour of ``require``: Django's 403 page."""
        if not self.can(action):
            raise PermissionDenied(f"needs one of: {', '.join(roles_allowed(action))}")


def _not_found() -> ApiError:
    return ApiError("not_found", "No such workspace.", param="X-Workspace")


def _membership_by_ref(*, user: User, ref: str) -> Membership | None:
    memberships = Membership.objects.select_related("workspace").filter(user=user)
    ref = ref.strip()
    if ref.isdigit():
        return memberships.filter(workspace_id=int(ref)).first()
    return memberships.filter(workspace__slug=ref).first()


def _personal_context(user: User) -> WorkspaceContext:
    membership = Membership.objects.select_related("workspace").get(user=user, workspace__personal_owner=user)
    return WorkspaceContext(workspace=membership.workspace, user=user, role=membership.role)


def workspace_context_get(request) -> WorkspaceContext:
    """The request's workspace context (computed once per request). The caller must be
    authenticated. Raises ``ApiError`` 404 for a workspace the caller does not belong to."""
    cached = getattr(request, "_workspace_context", None)
    if cached is not None:
        return cached
    context = _context_resolve(request)
    request._workspace_context = context
    return context


def _context_resolve(request) -> WorkspaceContext:
    user = request.user
    identity = getattr(request, "auth", None)
    workspace_id = getattr(identity, "workspace_id", None)
    if workspace_id is not None:  # a proxy key: its own workspace, its creator's role
        membership = (
            Membership.objects.select_related("workspace")
            .filter(user=user, workspace_id=workspace_id)
            .first()
        )
        if membership is None:  # the creator left: their keys are revoked, but be safe
            raise ApiError("invalid_api_key", "Invalid API key.", status_code=401)
        return WorkspaceContext(workspace=membership.workspace, user=user, role=membership.role)
    ref = request.META.get(WORKSPACE_HEADER, "")
    if ref:
        membership = _membership_by_ref(user=user, ref=ref)
        if membership is None:
            raise _not_found()
        return WorkspaceContext(workspace=membership.workspace, user=user, role=membership.role)
    session = getattr(request, "session", None)
    chosen = session.get(SESSION_WORKSPACE_KEY) if session is not None else None
    if chosen is not None:
        membership = _membership_by_ref(user=user, ref=str(chosen))
        if membership is not None:
            return WorkspaceContext(workspace=membership.workspace, user=user, role=membership.role)
        session.pop(SESSION_WORKSPACE_KEY, None)  # left or removed since: back to the personal one
    return _personal_context(user)


def workspace_context_for(*, user: User, workspace: Workspace) -> WorkspaceContext:
    """The context of ``user`` in ``workspace`` (404 ``ApiError`` if not a member): for
    endpoints that name the workspace in their URL (``/api/workspaces/{id}/…``)."""
    membership = Membership.objects.filter(user=user, workspace=workspace).first()
    if membership is None:
        raise _not_found()
    return WorkspaceContext(workspace=workspace, user=user, role=membership.role)


def page_context_get(request, action: str | None = None) -> WorkspaceContext:
    """The page flavour of ``workspace_context_get``: a workspace the user does not belong to is
    the page's 404 (an ``ApiError`` is the API's answer, not a page's); with ``action``, Django's
    403 page unless the role may do it."""
    try:
        context = workspace_context_get(request)
    except ApiError as error:
        raise Http404(error.message) from error
    if action is not None:
        context.require_page(action)
    return context
