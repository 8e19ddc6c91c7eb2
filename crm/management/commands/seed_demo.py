"""Demo data for `make run`: staff users and a few hundred realistic customers, once.

If the database has no customers: creates "admin" (superuser), "manager" and "support1",
"support2" with random passwords printed once, 400 customers from crm.generator (the same
shape as the reference data), then buckets and ROI when the segments app provides the
commands, else the per-customer metrics. With customers present it does nothing.
"""

import secrets

from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from crm import generator, roles
from crm.models import Customer, User

DEMO_CUSTOMERS = 400
DEMO_SEED = 2026


class Command(BaseCommand):
    help = "Load demo users and customers when the database has no customers (used by make run)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)

    def handle(self, *args, customers=DEMO_CUSTOMERS, verbosity=1, **options):
        if Customer.objects.exists():
            self.stdout.write("Customers exist already: reusing the data, nothing loaded.")
            return
        today = timezone.localdate()
        with transaction.atomic():
            passwords = {}
            users = {}
            for username, group, superuser in (
                ("admin", None, True),
                ("manager", roles.MANAGERS, False),
                ("support1", roles.SUPPORT, False),
                ("support2", roles.SUPPORT, False),
            ):
                user = User.objects.filter(username=username).first()
                if user is None:
                    passwords[username] = secrets.token_urlsafe(12)
                    user = User(username=username, email=f"{username}@example.com")
                    user.first_name = username.rstrip("12").capitalize()
                    user.is_staff = user.is_superuser = superuser
                    user.set_password(passwords[username])
                    user.save()
                    if group:
                        user.groups.add(Group.objects.get(name=group))
                users[username] = user.pk
            first_id = generator.next_customer_id()
            for chunk in generator.chunks(
                seed=DEMO_SEED,
                first_id=first_id,
                count=customers,
                staff_ids=[users["support1"], users["support2"], users["manager"]],
                servers=[users["support1"], users["support2"]],
                today=today,
                follow_up_share=0.02,
                external_prefix="DEMO",
            ):
                generator.write_chunk(chunk)
            generator.reset_customer_sequence()
        self.stdout.write(f"Loaded {customers} demo customers with orders and interactions.")
        if passwords:
            self.stdout.write("Demo users (passwords are shown only this once):")
        for username, password in passwords.items():
            self.stdout.write(f"  {username:<10} {password}")
        for username in users.keys() - passwords.keys():
            self.stdout.write(f"  {username:<10} (existed already; password unchanged)")
        self.derive(today=today, verbosity=verbosity)

    def derive(self, *, today, verbosity: int) -> None:
        """Buckets, ROI and metrics. The demo data stays even if one of these fails: say so."""
        commands = get_commands()
        roi_done = False
        for name in ("create_demo_buckets", "recalculate_roi"):
            if name not in commands:
                continue
            try:
                call_command(name, verbosity=verbosity)
                roi_done = roi_done or name == "recalculate_roi"
            except Exception as exc:
                self.stderr.write(f"{name} failed ({exc}); the demo data is loaded, run it later.")
        if not roi_done:
            from crm.metrics import metrics_refresh

            metrics_refresh(as_of=today)
