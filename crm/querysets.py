"""Chainable query vocabulary for crm models. Reads only."""

from django.db import models


class CustomerQuerySet(models.QuerySet):
    def base_queryset(self):
        return self.select_related("owner")

    def owned_by(self, user):
        return self.filter(owner=user)

    def unassigned(self):
        return self.filter(owner__isnull=True)


class FollowUpQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status="open")

    def for_user(self, user):
        return self.filter(assigned_to=user)
