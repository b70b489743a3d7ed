"""Forms for the account pages. Validation that matters lives in services; forms only parse."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.timezones import time_zone_names, validate_time_zone

from .providers import PROVIDER_CHOICES

ROTATE_GRACE_CHOICES = [
    (0, _("Revoke the old key now")),
    (3600, _("Keep the old key working for 1 hour")),
    (86400, _("Keep the old key working for 24 hours")),
    (172800, _("Keep the old key working for 48 hours")),
]


class SignupForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label=_("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", gettext("The two passwords do not match."))
        return cleaned


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, initial=_("Default"))


class ApiKeyRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(choices=ROTATE_GRACE_CHOICES, coerce=int, initial=0)


class ProviderKeyForm(forms.Form):
    """Set or remove one provider key. The secret is write-only: never rendered back."""

    ACTION_SET = "set"
    ACTION_DELETE = "delete"

    provider = forms.ChoiceField(choices=PROVIDER_CHOICES)
    scope = forms.ChoiceField(choices=[("workspace", "workspace"), ("global", "global")], initial="workspace")
    action = forms.ChoiceField(choices=[(ACTION_SET, "Save"), (ACTION_DELETE, "Remove")], initial=ACTION_SET)
    key = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False))


def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", gettext("Browser default"))] + [
        (name, name.replace("_", " ")) for name in sorted(time_zone_names())
    ]


class TimeZoneForm(forms.Form):
    """The profile's time zone. A plain field with a select (not a ``ChoiceField``): an unknown
    name gets the validator's message, which says what to pick, rather than Django's generic one."""

    FORM_NAME = "time_zone"  # the profile page's hidden ``form`` field for this form

    time_zone = forms.CharField(
        label=_("Time zone"),
        required=False,
        validators=[validate_time_zone],
        widget=forms.Select(choices=_time_zone_choices),
        help_text=_(
            "Pages show dates and times in this zone. Browser default: the zone your browser reports."
        ),
    )
