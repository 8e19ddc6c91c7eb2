"""factory_boy factories for segments models; other apps import these."""

import factory

from segments.models import Bucket


class BucketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Bucket

    name = factory.Sequence(lambda n: f"Bucket {n}")
    priority = factory.Sequence(lambda n: n + 1)
    colour = "#1f77b4"
    persona = "Who they are and how to serve them."
    rules = factory.LazyFunction(
        lambda: {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}
    )
