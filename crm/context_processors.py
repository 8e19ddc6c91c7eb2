from django.conf import settings


def crm(request):
    return {"CRM_CURRENCY": settings.CRM_CURRENCY}
