from django import forms
from django.conf import settings

from .models import Organization
from .services import TRIAL_DAYS_MAX


class OrganizationLinkForm(forms.Form):
    """The operator's "Link to Stripe" form (admin page). Saving calls organization_link."""

    admin_email = forms.EmailField(help_text="Billing contact; the Stripe customer's email.")
    deployment_type = forms.ChoiceField(choices=Organization.DeploymentType.choices)
    plan_type = forms.ChoiceField(choices=Organization.PlanType.choices)
    trial_days = forms.IntegerField(min_value=0, max_value=TRIAL_DAYS_MAX, initial=14)
    price_id = forms.CharField(
        max_length=255,
        required=False,
        help_text="Stripe price (metered, on the VaultAI meter). Empty: the default for the plan type.",
    )
    backfill = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Also send the reports received before linking (last 35 days; Stripe refuses older).",
    )

    def __init__(self, *args, organization: Organization, **kwargs):
        kwargs.setdefault(
            "initial",
            {
                "admin_email": organization.admin_email,
                "deployment_type": organization.deployment_type or Organization.DeploymentType.ON_PREMISE,
                "plan_type": organization.plan_type or Organization.PlanType.SELF_HOSTED,
                "price_id": organization.stripe_price_id,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["price_id"].help_text += (
            f" Managed cloud: {settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD or 'not set'};"
            f" self-hosted: {settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED or 'not set'}."
        )
