"""Chainable query vocabulary for crm models. Reads only."""

from django.db import models
from django.db.models import Q


class CustomerQuerySet(models.QuerySet):
    def base_queryset(self):
        return self.select_related("owner")

    def with_metrics(self):
        """LEFT JOIN the narrow metrics row; customers without one get None for metrics__*."""
        return self.select_related("metrics")

    def owned_by(self, user):
        return self.filter(owner=user)

    def unassigned(self):
        return self.filter(owner__isnull=True)

    def search(self, text: str):
        """Name, email or phone containing `text` (case-insensitive); each word must match.

        icontains on PostgreSQL; a trigram index makes it fast at scale.
        """
        qs = self
        for word in (text or "").split()[:5]:
            qs = qs.filter(
                Q(first_name__icontains=word)
                | Q(last_name__icontains=word)
                | Q(email__icontains=word)
                | Q(phone__icontains=word)
            )
        return qs


class FollowUpQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status="open")

    def for_user(self, user):
        return self.filter(assigned_to=user)

    def due_by(self, day):
        return self.filter(due_on__lte=day)
