import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# An address the mail sink (like a real ESP) accepts: a domain with a dot.
# example.org is reserved for examples, so no real inbox ever receives it.
DEMO_EMAIL = "admin@example.org"


class Command(BaseCommand):
    help = "Create the local superuser on first run and print its credentials (development)."

    def handle(self, *args, **options):
        credentials = settings.VAR_DIR / "admin-credentials.txt"
        User = get_user_model()
        if credentials.exists() and User.objects.filter(username="admin").exists():
            password = credentials.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username="admin", defaults={"email": DEMO_EMAIL})
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            credentials.parent.mkdir(parents=True, exist_ok=True)
            credentials.write_text(password + "\n")
            credentials.chmod(0o600)
        # Earlier versions gave the demo admin admin@localhost, which ESPs and
        # the mail sink refuse, so test sends failed out of the box.
        User.objects.filter(username="admin", email="admin@localhost").update(email=DEMO_EMAIL)
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin: {settings.SITE_URL}/admin/  user: admin  password: {password}"
            )
        )
