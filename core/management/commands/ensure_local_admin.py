import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (or reset) the local admin account and print its login. DEBUG only."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args, email, **options):
        if not settings.DEBUG:
            raise CommandError("ensure_local_admin is for local development only (DEBUG is off).")
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_superuser(email=email, password=password)
        else:
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save(update_fields=["is_staff", "is_superuser", "password"])
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Local admin login (new password on every `make run`):\n"
                f"    email:    {email}\n    password: {password}\n"
                f"    admin:    {settings.SITE_URL}/admin/\n"
            )
        )
