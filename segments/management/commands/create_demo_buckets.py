"""Twenty realistic persona buckets for the demo and the reference data; idempotent by name."""

from django.core.management.base import BaseCommand

from segments.services import buckets_ensure


def _c(field, operator, value=None):
    out = {"field": field, "operator": operator}
    if operator != "is empty":
        out["value"] = value
    return out


def _all(*conditions):
    return {"op": "and", "conditions": list(conditions)}


def _any(*conditions):
    return {"op": "or", "conditions": list(conditions)}


# (name, colour, persona, rules) in priority order: the first match wins.
DEMO_BUCKETS = [
    (
        "Whales",
        "#08306b",
        "The top 10 % by lifetime contribution. Give them a named account owner, answer "
        "first, invite them to previews; never make them repeat themselves.",
        _all(_c("value_decile", "=", 1)),
    ),
    (
        "Unowned key accounts",
        "#2171b5",
        "Deciles 2-3 with nobody responsible for them. Assign an owner this week.",
        _all(_c("value_decile", "in", [2, 3]), _c("has_owner", "=", False)),
    ),
    (
        "Sarah the influencer",
        "#e377c2",
        "Around 19-30, buys online every month or so, thousands of followers. A bad "
        "experience is public: reply fast on social, send new products to review.",
        _all(_c("followers", ">=", 3000), _c("buyer_type", "in", ["regular", "occasional"])),
    ),
    (
        "High effort, low value",
        "#d62728",
        "Need a lot of hand-holding and bring little in. Serve through self-service, chat "
        "and scheduled call-backs rather than long ad-hoc calls.",
        _all(
            _c("effort", ">=", 8),
            _any(_c("value_decile", ">=", 8), _c("contribution_window", "<", 0)),
        ),
    ),
    (
        "Money losers",
        "#a50f15",
        "Cost more to serve than their margin over the last year. Review how they are "
        "served; steer them to cheaper channels.",
        _all(_c("contribution_window", "<", 0)),
    ),
    (
        "Churn risk regulars",
        "#ff7f0e",
        "Bought four or more times but have gone quiet for 3-6 months. Call them: ask what "
        "changed, offer help before they leave.",
        _all(_c("status", "=", "at_risk"), _c("order_count", ">=", 4)),
    ),
    (
        "Lost high-value",
        "#8c564b",
        "Churned customers from the top three deciles. Churn interview first, then a "
        "personal win-back offer.",
        _all(_c("status", "=", "churned"), _c("value_decile", "<=", 3)),
    ),
    (
        "Joe the loyal in-store buyer",
        "#2ca02c",
        "Late thirties, researches online, buys in the store, loyal, spends a few hundred "
        "per visit, no social presence. Know him by name in store; tell him about stock.",
        _all(
            _c("preferred_channel", "=", "store"),
            _c("buyer_type", "=", "regular"),
            _c("aov", "between", ["150", "600"]),
            _c("followers", "<", 100),
        ),
    ),
    (
        "Online regulars",
        "#17becf",
        "Order online several times a year with little help. Keep the site fast and the "
        "delivery promises kept; email, not calls.",
        _all(_c("preferred_channel", "=", "online"), _c("buyer_type", "=", "regular")),
    ),
    (
        "Phone and senior customers",
        "#9467bd",
        "Prefer the phone or are 65 and older. Patient phone service, clear letters, no "
        "push to apps.",
        _any(_c("preferred_channel", "=", "phone"), _c("age", ">=", 65)),
    ),
    (
        "Big-ticket occasional buyers",
        "#bcbd22",
        "Buy rarely but spend a lot (gifts, special occasions). Remind them before the "
        "occasions that matter; offer advice, not discounts.",
        _all(_c("buyer_type", "=", "occasional"), _c("aov", ">=", "300")),
    ),
    (
        "New first-timers",
        "#98df8a",
        "One order in the last 90 days. The second order decides: a thank-you, a check "
        "that all went well, a reason to come back.",
        _all(_c("buyer_type", "=", "first_time"), _c("days_since_last_order", "<=", 90)),
    ),
    (
        "First-timers gone quiet",
        "#c7e9c0",
        "Bought once, more than 90 days ago. Ask what kept them from returning.",
        _all(_c("buyer_type", "=", "first_time"), _c("days_since_last_order", ">", 90)),
    ),
    (
        "Young digital natives",
        "#aec7e8",
        "18-29 and very at home online. Chat and social first; self-service works.",
        _all(_c("age", "between", [18, 29]), _c("web_savviness", ">=", 4)),
    ),
    (
        "Low-touch steady buyers",
        "#74c476",
        "Easy to serve and ordering regularly. Do not over-contact; keep things working.",
        _all(_c("effort", "<=", 3), _c("orders_window", ">=", 2)),
    ),
    (
        "Bargain hunters",
        "#fdae6b",
        "Small baskets, often. Point them to bundles and self-service; keep service cost low.",
        _all(_c("aov", "<", "30"), _c("orders_window", ">=", 3)),
    ),
    (
        "City occasional buyers",
        "#6baed6",
        "Occasional buyers in the big cities, near the stores. Invite them to in-store events.",
        _all(_c("city", "in", ["Seoul", "Busan"]), _c("buyer_type", "=", "occasional")),
    ),
    (
        "Other churned",
        "#7f7f7f",
        "Left more than 180 days ago or cancelled. Interview a sample; do not spend more.",
        _all(_c("status", "=", "churned")),
    ),
    (
        "Other at risk",
        "#ffbb78",
        "No order for 91-180 days. A light reminder, no heavy discounting.",
        _all(_c("status", "=", "at_risk")),
    ),
    (
        "Leads without orders",
        "#c5b0d5",
        "Known to us but never ordered. Marketing, not support, owns them.",
        _any(_c("buyer_type", "=", "none"), _c("buyer_type", "is empty")),
    ),
]


class Command(BaseCommand):
    help = "Create the demo persona buckets that do not exist yet (by name); safe to rerun."

    def handle(self, *args, **options):
        specs = [
            {"name": name, "colour": colour, "persona": persona, "rules": rules, "priority": i}
            for i, (name, colour, persona, rules) in enumerate(DEMO_BUCKETS, start=1)
        ]
        created, existing = buckets_ensure(specs=specs)
        self.stdout.write(f"Buckets: {len(created)} created, {existing} already there.")
