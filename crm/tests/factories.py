"""factory_boy factories for crm models; other apps import these."""

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from crm import models, roles


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-for-tests-1")


def _join(group_name):
    def join_role(obj, create, extracted, **kwargs):
        if create:
            obj.groups.add(Group.objects.get(name=extracted or group_name))

    return factory.PostGeneration(join_role)


class SupportUserFactory(UserFactory):
    role = _join(roles.SUPPORT)


class ManagerFactory(UserFactory):
    role = _join(roles.MANAGERS)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Customer

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    city = "Seoul"
    country = "KR"
    acquisition_date = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=400))
    acquisition_cost = Decimal("50.00")


class SocialProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.SocialProfile

    customer = factory.SubFactory(CustomerFactory)
    network = models.SocialNetwork.INSTAGRAM
    handle = factory.Sequence(lambda n: f"handle{n}")
    followers = 100


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Order

    customer = factory.SubFactory(CustomerFactory)
    placed_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=10))
    channel = models.Channel.ONLINE
    revenue = Decimal("100.00")
    cost_of_goods = Decimal("70.00")
    margin = factory.LazyAttribute(lambda o: o.revenue - o.cost_of_goods)


class InteractionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Interaction

    customer = factory.SubFactory(CustomerFactory)
    staff = factory.SubFactory(SupportUserFactory)
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=5))
    channel = models.InteractionChannel.PHONE
    minutes = 15
    summary = "Asked about delivery"


class FollowUpFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.FollowUp

    customer = factory.SubFactory(CustomerFactory)
    source = models.FollowUpSource.MANUAL
    reason = "Call back"
    due_on = factory.LazyFunction(timezone.localdate)
