"""Run every registered invariant (the ledger's and other apps'); exit 1 if any fails."""

from django.core.management.base import BaseCommand, CommandError

from carnet.ledger import invariants


class Command(BaseCommand):
    help = "Check the ledger's invariants and those other apps register; exits 1 when any fails."

    def handle(self, *args, **options):
        invariants.discover()
        failed = []
        for name, problems in invariants.run_all().items():
            if not problems:
                self.stdout.write(f"{self.style.SUCCESS('OK  ')}  {name}")
                continue
            failed.append(name)
            self.stdout.write(f"{self.style.ERROR('FAIL')}  {name} ({len(problems)})")
            for problem in problems:
                self.stdout.write(f"        {problem}")
        if failed:
            raise CommandError(f"{len(failed)} invariant(s) failed: {', '.join(failed)}")
