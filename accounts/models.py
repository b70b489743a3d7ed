from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone
from encrypted_fields.fields import EncryptedTextField

from core.models import BaseModel, WorkspaceDayMinutes
from core.timezones import TIME_ZONE_MAX_LENGTH, validate_time_zone

from .providers import PROVIDER_CHOICES


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        email = self.normalize_email(email).lower()
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        extra_fields.setdefault("email_verified_at", timezone.now())  # the operator typed it themselves
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A customer (or operator, with is_staff). Email is the login."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # Set when the owner of the address followed the confirmation link (accounts.services.verification).
    email_verified_at = models.DateTimeField(null=True, blank=True)
    # IANA name pages show times in (core.timezones); blank: the browser's zone, else UTC.
    time_zone = models.CharField(
        max_length=TIME_ZONE_MAX_LENGTH, blank=True, default="", validators=[validate_time_zone]
    )
    # The language of the emails sent to them (a code of settings.LANGUAGES), set by the language
    # switcher and at sign-up; blank: not known yet, so English (settings.LANGUAGE_CODE).
    # ``db_default``: the previous release's sign-ups (no such field) still insert during a deploy.
    language = models.CharField(
        max_length=8, blank=True, default="", db_default="", choices=settings.LANGUAGES
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self):
        return self.email


class Role(models.TextChoices):
    """What a member may do in a workspace; the table of permissions is ``accounts.roles``."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    BILLING = "billing", "Billing"
    DEVELOPER = "developer", "Developer"


class Workspace(BaseModel):
    """The billing tenant: it holds the plan and quota periods, the credits, the proxy keys, the
    bring-your-own provider keys, the usage and the payments. Every user has a personal one
    (``personal_owner``), created with the account; teams create more and invite members.

    Not to be confused with ``organizations.Organization``: a self-hosted VaultAI instance the
    operator bills per seat from its usage reports.
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    # Set for a user's personal workspace only: one each, never shared with a second owner.
    personal_owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_workspace",
    )
    # Set by an operator (``workspace_suspend``): its keys answer 403 ``workspace_suspended``
    # until reinstated; members still see their pages. Empty: not suspended.
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=500, blank=True)

    def __str__(self):
        return self.name

    @property
    def personal(self) -> bool:
        return self.personal_owner_id is not None


class Membership(BaseModel):
    """A user's role in a workspace (one row per pair)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    # The member's monthly spend caps across every key they created in the workspace:
    # ``[{"unit": "money"|"credits", "window": "month", "amount"}]`` (money in minor units of the
    # plan's currency), enforced in the same reservation as the keys' own limits.
    limits = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "workspace"], name="membership_one_per_user")]
        indexes = [models.Index(fields=["workspace", "role"], name="membership_workspace_role")]

    def __str__(self):
        return f"{self.user_id} in {self.workspace_id} as {self.role}"


class Invitation(BaseModel):
    """An invitation to join a workspace with a role. Only the SHA-256 of the token is stored;
    single use (``accepted_at``), revocable, and it expires (7 days by default)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="invitation_workspace_created")]

    def __str__(self):
        return f"{self.email} → {self.workspace_id} as {self.role}"


class AuditEvent(models.Model):
    """One change to money, keys or people: append-only (no service updates or deletes it, the
    admin shows it read-only). ``details`` never holds a secret; ``workspace`` is empty for an
    operator action that concerns no workspace (a global provider key)."""

    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_email = models.EmailField(blank=True)  # kept when the actor's account is gone
    action = models.CharField(max_length=64)  # "member.role_changed", "api_key.created", …
    target = models.CharField(max_length=200, blank=True)  # "user:12", "api_key:7", …
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"], name="audit_workspace_created")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target}"


class ApiKey(BaseModel):
    """A customer proxy key (sk_agentai_…) of a workspace. Only its SHA-256 hash is stored.

    The key acts in its workspace with the role of the member who created it (``created_by``);
    a key whose creator is gone (account deleted) or inactive no longer authenticates, and a
    member's keys are revoked when they leave the workspace.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=24)  # display only, e.g. "sk_agentai_Ab3d"
    key_hash = models.CharField(max_length=64, unique=True)  # hex SHA-256 of the plaintext
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set on rotation: the key keeps working until then, and is revoked from then on.
    expires_at = models.DateTimeField(null=True, blank=True)
    # Spend controls (``api_key_limits_set``): [{"unit": "requests"|"tokens", "window":
    # "day"|"month"|"total", "amount": int > 0}], at most one per unit and window; and the
    # models the key may call (empty: every model). Enforced by the proxy, exactly.
    limits = models.JSONField(default=list, blank=True)
    allowed_models = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="apikey_workspace_created")]

    def __str__(self):
        return f"{self.prefix}… ({self.name})"

    def is_usable(self, *, now=None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return not (self.expires_at is not None and self.expires_at <= now)


class ProviderCredential(BaseModel):
    """An upstream provider secret: the operator's (global) or a workspace's own (bring your own
    key, used for every call made with that workspace's proxy keys).

    ``secret`` is Fernet-encrypted at rest. ``fingerprint`` is an HMAC-SHA256 of the plaintext,
    checked after decryption, because the encryption library silently returns the ciphertext
    when the key is wrong. Never filter on ``secret``.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global", "Global (operator)"
        WORKSPACE = "workspace", "Workspace (bring your own)"

    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    workspace = models.ForeignKey(
        Workspace,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="provider_credentials",
    )
    secret = EncryptedTextField()
    fingerprint = models.CharField(max_length=64)  # hex HMAC-SHA256(plaintext)
    masked = models.CharField(max_length=16)  # e.g. "sk-12…89", safe to display

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider"], condition=Q(scope="global"), name="providercred_one_global"
            ),
            models.UniqueConstraint(
                fields=["workspace", "provider"],
                condition=Q(scope="workspace"),
                name="providercred_one_workspace",
            ),
            models.CheckConstraint(
                condition=(
                    Q(scope="global", workspace__isnull=True) | Q(scope="workspace", workspace__isnull=False)
                ),
                name="providercred_scope_owner",
            ),
        ]

    def __str__(self):
        return f"{self.provider} ({self.scope}) {self.masked}"


class KeyReveal(BaseModel):
    """A one-time link that shows a freshly created key's plaintext once (e.g. after checkout).

    Only the SHA-256 of the URL token is stored. The plaintext is Fernet-encrypted with its
    fingerprint beside it, and wiped (set to NULL) the moment it is shown or found expired.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="reveals")
    token_hash = models.CharField(max_length=64, unique=True)  # hex SHA-256 of the URL token
    secret = EncryptedTextField(null=True, blank=True)  # NULL once revealed or expired
    fingerprint = models.CharField(max_length=64, blank=True)  # hex HMAC-SHA256(plaintext)
    expires_at = models.DateTimeField()
    revealed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"reveal of {self.api_key_id} (expires {self.expires_at:%Y-%m-%d %H:%M})"


class InvalidKeyDay(WorkspaceDayMinutes):
    """Minutes of a UTC day in which one of a workspace's keys that can no longer be used
    (revoked, expired after a rotation, or its creator deactivated) was presented.

    Refused before anything is recorded, such calls never reach the usage rollups; this is how
    the operator's abuse list sees a leaked or forgotten key still being tried. Written at the
    first refusal of each key's minute only (``accounts.services.invalid_key_refusal_record``).
    A key that was never issued belongs to nobody and is not counted.
    """

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "day"], name="invalid_key_workspace_day")]
        indexes = [models.Index(fields=["day", "minutes"], name="invalid_key_day_minutes")]
