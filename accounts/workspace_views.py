"""Workspace pages: the members page (invite, change roles, remove, revoke invitations), the
invitation's accept page, the navigation's workspace switcher and the "new workspace" form.

Every form posts to its own URL and redirects (Post/Redirect/Get). A page of one workspace is
declared with ``workspace_page``: it resolves the caller's membership (404 for a non-member)
and requires the action declared for the method (Django's 403 page otherwise); the permission
matrix test reads the same declaration. Buttons a role cannot use are not shown, and the
services refuse them anyway.
"""

from __future__ import annotations

from decimal import Decimal
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.exceptions import ApiError
from core.redirects import safe_next_url

from .models import Role
from .roles import ROLE_LABELS, ROLE_ORDER
from .selectors import member_limits_usage_get
from .services.member_limits import membership_limits_set
from .services.workspaces import (
    WORKSPACE_NAME_MAX_LENGTH,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
    workspace_create,
)
from .tenancy import SESSION_WORKSPACE_KEY, WorkspaceContext
from .workspace_selectors import (
    audit_event_list,
    invitation_by_token_get,
    invitation_pending_list,
    membership_list,
    workspace_member_context_get,
)

ROLE_CHOICES = list(ROLE_LABELS.items())


def declares(**methods: str | None):
    """Record the action each method of a view needs (None: any signed-in user, checked by the
    view or its service), for the permission-matrix test."""

    def decorate(view):
        view.permission_required = dict(methods)
        view.self_service = {}
        return view

    return decorate


def workspace_page(*, self_service: dict[str, str] | None = None, **methods: str):
    """A page of the workspace in its URL: the view gets the caller's ``WorkspaceContext``.
    ``self_service`` maps a method to the URL argument that, when it is the caller's own id,
    needs no action (leaving)."""
    self_service = self_service or {}

    def decorate(view):
        @wraps(view)
        def wrapper(request, workspace_id, **kwargs):
            method = request.method.lower()
            if method not in methods:
                return HttpResponseNotAllowed([name.upper() for name in methods])
            ctx = _page_context(request, workspace_id)
            own_kwarg = self_service.get(method)
            if own_kwarg is None or str(kwargs.get(own_kwarg)) != str(request.user.pk):
                ctx.require_page(methods[method])
            return view(request, ctx, **kwargs)

        guarded = login_required(wrapper)
        guarded.permission_required = dict(methods)
        guarded.self_service = dict(self_service)
        return guarded

    return decorate


def _page_context(request, workspace_id) -> WorkspaceContext:
    try:
        return workspace_member_context_get(user=request.user, workspace_id=workspace_id)
    except ApiError as error:
        raise Http404(error.message)


def _members_url(workspace_id: int) -> str:
    return reverse("accounts:workspace-members", kwargs={"workspace_id": workspace_id})


def _refused(request, error: ApiError):
    """A service's refusal on a page: 404 stays a 404, anything else is a message."""
    if error.status_code == 404:
        raise Http404(error.message)
    messages.error(request, error.message)


class InviteForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Email address"), max_length=254)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES)


class MemberCapForm(forms.Form):
    """A member's monthly cap as the page takes it: money in the plan's currency (``12.50``) or
    credits; "none" lifts it."""

    unit = forms.ChoiceField(
        choices=[
            ("none", gettext_lazy("No cap")),
            ("money", gettext_lazy("Money")),
            ("credits", gettext_lazy("Credits")),
        ]
    )
    amount = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=14, decimal_places=2)

    def limits(self) -> list[dict]:
        unit, amount = self.cleaned_data["unit"], self.cleaned_data["amount"]
        if unit == "none":
            return []
        if amount is None:
            raise forms.ValidationError(_("Give the cap's amount."))
        if unit == "credits":
            if amount != amount.to_integral_value():
                raise forms.ValidationError(_("Credits are whole numbers."))
            return [{"unit": "credits", "amount": int(amount)}]
        return [{"unit": "money", "amount": int(amount * 100)}]  # minor units (cents, centimes)


class WorkspaceCreateForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Workspace name"), max_length=WORKSPACE_NAME_MAX_LENGTH, strip=True
    )


def _member_rows(ctx: WorkspaceContext, members) -> list[dict]:
    """Each member with what the viewer may do to them (the services decide again on POST)."""
    is_owner = ctx.role == Role.OWNER
    manage = ctx.can("members.manage")
    owners = sum(1 for member in members if member.role == Role.OWNER)
    caps = member_limits_usage_get(memberships=members)  # one query for every capped member
    rows = []
    for member in members:
        is_self = member.user_id == ctx.user.pk
        last_owner = member.role == Role.OWNER and owners <= 1
        may_touch = manage and (is_owner or member.role != Role.OWNER)
        rows.append(
            {
                "membership": member,
                "is_self": is_self,
                "role_label": ROLE_LABELS.get(member.role, member.role),
                "can_change": may_touch and not last_owner,
                "can_cap": may_touch,
                "can_remove": (is_self or may_touch) and not last_owner,
                "limits": caps.get(member.pk, []),
            }
        )
    return rows


def _assignable_roles(ctx: WorkspaceContext) -> list[tuple[str, str]]:
    """Roles the viewer may give: an owner any (but no second owner of a personal workspace),
    an admin any but owner."""
    may_make_owner = ctx.role == Role.OWNER and not ctx.workspace.personal
    return [(role, ROLE_LABELS[role]) for role in ROLE_ORDER if role != Role.OWNER or may_make_owner]


@never_cache
@workspace_page(get="members.read")
def workspace_members(request, ctx: WorkspaceContext):
    members = list(membership_list(workspace=ctx.workspace))
    perms_ws = ctx.permissions
    invitations = []
    if "invitations.manage" in perms_ws:
        invitations = [
            {
                "invitation": invitation,
                "role_label": ROLE_LABELS.get(invitation.role, invitation.role),
                "can_revoke": ctx.role == Role.OWNER or invitation.role != Role.OWNER,
            }
            for invitation in invitation_pending_list(workspace=ctx.workspace)
        ]
    context = {
        "workspace": ctx.workspace,
        "workspace_context": ctx,
        "perms_ws": perms_ws,
        "role_label": ROLE_LABELS.get(ctx.role, ctx.role),
        "members": _member_rows(ctx, members),
        "invitations": invitations,
        "assignable_roles": _assignable_roles(ctx),
        "default_invite_role": Role.DEVELOPER,
    }
    return render(request, "accounts/workspaces/members.html", context)


AUDIT_PAGE_SIZE = 50


@never_cache
@workspace_page(get="audit.read")
def workspace_audit(request, ctx: WorkspaceContext):
    """The workspace's audit log, newest first, 50 a page: "Older" continues below the last
    row shown (by id, so rows written meanwhile neither repeat nor go missing)."""
    events = audit_event_list(workspace=ctx.workspace).select_related("actor").order_by("-id")
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    page = list(events[: AUDIT_PAGE_SIZE + 1])
    context = {
        "workspace": ctx.workspace,
        "workspace_context": ctx,
        "perms_ws": ctx.permissions,
        "events": page[:AUDIT_PAGE_SIZE],
        "older": page[AUDIT_PAGE_SIZE - 1].pk if len(page) > AUDIT_PAGE_SIZE else None,
    }
    return render(request, "accounts/workspaces/audit.html", context)


@require_POST
@workspace_page(post="invitations.manage")
def workspace_invite(request, ctx: WorkspaceContext):
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter an email address and choose a role."))
        return redirect(_members_url(ctx.workspace.pk))
    try:
        invitation, _accept_url = invitation_create(
            workspace=ctx.workspace, actor=request.user, request=request, **form.cleaned_data
        )
    except ApiError as error:
        _refused(request, error)
    else:
        label = ROLE_LABELS[invitation.role]
        messages.success(
            request,
            _("Invitation sent to %(email)s (%(role)s). The link is valid 7 days.")
            % {"email": invitation.email, "role": label},
        )
    return redirect(_members_url(ctx.workspace.pk))


@require_POST
@workspace_page(post="members.manage")
def workspace_member_role(request, ctx: WorkspaceContext, user_id: int):
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a role."))
        return redirect(_members_url(ctx.workspace.pk))
    try:
        membership = membership_role_change(
            workspace=ctx.workspace,
            actor=request.user,
            user_id=user_id,
            role=form.cleaned_data["role"],
            request=request,
        )
    except ApiError as error:
        _refused(request, error)
    else:
        messages.success(
            request,
            _("%(email)s is now %(role)s.")
            % {"email": membership.user.email, "role": ROLE_LABELS[membership.role]},
        )
    return redirect(_members_url(ctx.workspace.pk))


@require_POST
@workspace_page(post="members.manage")
def workspace_member_limits(request, ctx: WorkspaceContext, user_id: int):
    """Set or lift a member's monthly spend cap (all the keys they created here)."""
    form = MemberCapForm(request.POST)
    try:
        limits = form.limits() if form.is_valid() else None
    except forms.ValidationError as error:
        form.add_error(None, error)
        limits = None
    if limits is None:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect(_members_url(ctx.workspace.pk))
    try:
        membership = membership_limits_set(
            workspace=ctx.workspace, actor=request.user, user_id=user_id, limits=limits, request=request
        )
    except ApiError as error:
        _refused(request, error)
    else:
        done = (
            _("%(email)s now has a monthly cap.") if limits else _("%(email)s has no monthly cap any more.")
        )
        messages.success(request, done % {"email": membership.user.email})
    return redirect(_members_url(ctx.workspace.pk))


@require_POST
@workspace_page(post="members.manage", self_service={"post": "user_id"})
def workspace_member_remove(request, ctx: WorkspaceContext, user_id: int):
    leaving = user_id == request.user.pk
    try:
        revoked = membership_remove(
            workspace=ctx.workspace, actor=request.user, user_id=user_id, request=request
        )
    except ApiError as error:
        _refused(request, error)
        return redirect(_members_url(ctx.workspace.pk))
    keys = (
        " "
        + ngettext("%(count)d API key revoked.", "%(count)d API keys revoked.", len(revoked))
        % {"count": len(revoked)}
        if revoked
        else ""
    )
    if leaving:
        if str(request.session.get(SESSION_WORKSPACE_KEY)) == str(ctx.workspace.pk):
            request.session.pop(SESSION_WORKSPACE_KEY, None)
        messages.success(request, _("You left %(name)s.") % {"name": ctx.workspace.name} + keys)
        return redirect("accounts:dashboard")
    messages.success(request, _("Member removed.") + keys)
    return redirect(_members_url(ctx.workspace.pk))


@require_POST
@workspace_page(post="invitations.manage")
def workspace_invitation_revoke(request, ctx: WorkspaceContext, invitation_id: int):
    try:
        invitation = invitation_revoke(
            workspace=ctx.workspace, actor=request.user, invitation_id=invitation_id, request=request
        )
    except ApiError as error:
        _refused(request, error)
    else:
        messages.success(request, _("Invitation to %(email)s revoked.") % {"email": invitation.email})
    return redirect(_members_url(ctx.workspace.pk))


@declares(get=None, post=None)
@login_required
@require_http_methods(["GET", "POST"])
def workspace_new(request):
    form = WorkspaceCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            workspace = workspace_create(user=request.user, name=form.cleaned_data["name"], request=request)
        except ApiError as error:
            form.add_error("name", error.message)
        else:
            request.session[SESSION_WORKSPACE_KEY] = workspace.pk
            messages.success(
                request, _("Workspace %(name)s created. Invite your team below.") % {"name": workspace.name}
            )
            return redirect(_members_url(workspace.pk))
    return render(request, "accounts/workspaces/new.html", {"form": form})


def _back_after_switch(request, workspace_id: int) -> str:
    """Back where the switcher was used; a page of the previous workspace becomes the new
    workspace's members page (the same page of another workspace may not exist)."""
    target = safe_next_url(request, request.POST.get("next", ""))
    if not target:
        return reverse("accounts:dashboard")
    try:
        match = resolve(target.split("?", 1)[0])
    except Resolver404:
        return target
    if "workspace_id" in match.kwargs:
        return _members_url(workspace_id)
    return target


@declares(post=None)
@login_required
@require_POST
def workspace_switch(request):
    """The navigation's switcher: act on another of one's workspaces (kept in the session)."""
    chosen = request.POST.get("workspace", "")
    if chosen == "new":
        return redirect("accounts:workspace-new")
    ctx = _page_context(request, chosen)
    request.session[SESSION_WORKSPACE_KEY] = ctx.workspace.pk
    return redirect(_back_after_switch(request, ctx.workspace.pk))


@declares(get=None, post=None)
@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_page(request, token: str):
    """The invitation's link. Signed in with the invited address: the workspace and role, and
    an Accept button (POST joins and selects the workspace). Signed out: log in or sign up,
    coming back here. Signed in as someone else: says so, without the invited address."""
    found = invitation_by_token_get(token=token)
    if found is None:
        raise Http404("No such invitation.")
    user = request.user
    if request.method == "POST":
        if not user.is_authenticated:
            return redirect(f"{reverse('accounts:login')}?{urlencode({'next': request.path})}")
        try:
            membership = invitation_accept(user=user, token=token, request=request)
        except ApiError as error:
            messages.error(request, error.message)
            return redirect(request.path)
        request.session[SESSION_WORKSPACE_KEY] = membership.workspace_id
        label = ROLE_LABELS[membership.role]
        messages.success(
            request,
            _("Welcome to %(name)s. You joined as %(role)s.")
            % {"name": membership.workspace.name, "role": label},
        )
        return redirect("accounts:dashboard")
    invitation = found.invitation
    addressed = user.is_authenticated and invitation.email.lower() == user.email.lower()
    member = user.is_authenticated and invitation.workspace.memberships.filter(user=user).exists()
    context = {
        "invitation": invitation,
        "state": found.state,
        "role_label": ROLE_LABELS.get(invitation.role, invitation.role),
        "addressed_to_user": addressed,
        "already_member": member,
        # Signed in as someone else: nothing of the workspace (the link was not meant for them).
        "show_workspace": not user.is_authenticated or addressed or member,
    }
    status = 200 if found.pending else 410
    return render(request, "accounts/workspaces/accept.html", context, status=status)
