"""What billing tells accounts about a workspace, through ``accounts.registry`` (accounts never
imports billing): the admin's summary line about its plan."""

from .selectors import plan_for_workspace_get, subscription_get


def workspace_plan_summary(*, workspace) -> list[tuple[str, str]]:
    subscription = subscription_get(workspace=workspace)
    if subscription is None:
        return [("Plan", f"{plan_for_workspace_get(workspace=workspace).name} (no paid subscription)")]
    ends = subscription.current_period_end
    until = f", period ends {ends:%Y-%m-%d}" if ends else ""
    return [("Plan", f"{subscription.plan.name} ({subscription.status}{until})")]
