"""factory_boy factories for segments models; other apps import these."""

import factory

from segments.models import Bucket, BucketVersion


class BucketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Bucket
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Bucket {n}")
    priority = factory.Sequence(lambda n: n + 1)
    colour = "#1f77b4"
    persona = "Who they are and how to serve them."
    rules = factory.LazyFunction(
        lambda: {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}
    )

    @factory.post_generation
    def first_version(obj, create, extracted, **kwargs):
        """Like segments.services.bucket_create: every bucket has its version 1."""
        if create:
            BucketVersion.objects.create(
                bucket=obj,
                version=obj.version,
                name=obj.name,
                persona=obj.persona,
                colour=obj.colour,
                priority=obj.priority,
                active=obj.active,
                rules=obj.rules,
            )
