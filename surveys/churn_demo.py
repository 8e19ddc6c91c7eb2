"""Demo reason codes for churn interviews. `seed_demo` (or anyone) may call
`churn_demo_reason_codes()`; it is idempotent."""

from django.db import transaction

from .models import ReasonCategory, ReasonCode

DEMO_REASON_CODES = [
    ("too-expensive", ReasonCategory.PRICE, "Too expensive", "너무 비쌈"),
    ("found-cheaper", ReasonCategory.PRICE, "Found it cheaper elsewhere", "다른 곳이 더 저렴함"),
    ("quality", ReasonCategory.PRODUCT, "Product quality", "제품 품질"),
    ("range", ReasonCategory.PRODUCT, "Missing products or sizes", "원하는 제품/사이즈 없음"),
    ("poor-service", ReasonCategory.SERVICE, "Poor customer service", "고객 서비스 불만"),
    ("slow-delivery", ReasonCategory.DELIVERY, "Slow or unreliable delivery", "배송 지연"),
    ("competitor", ReasonCategory.COMPETITOR, "Switched to a competitor", "경쟁사로 이동"),
    ("moved", ReasonCategory.NO_LONGER_NEEDS, "Moved away", "이사함"),
    ("no-need", ReasonCategory.NO_LONGER_NEEDS, "No longer needs it", "더 이상 필요 없음"),
    ("other", ReasonCategory.OTHER, "Other", "기타"),
]


@transaction.atomic
def churn_demo_reason_codes() -> int:
    """Create the demo reason codes that do not exist yet (matched by code; existing codes,
    possibly reworded by managers, are left alone). Returns how many were created."""
    existing = set(ReasonCode.objects.values_list("code", flat=True))
    new = [
        ReasonCode(code=code, category=category, label_en=label_en, label_ko=label_ko)
        for code, category, label_en, label_ko in DEMO_REASON_CODES
        if code not in existing
    ]
    ReasonCode.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)
