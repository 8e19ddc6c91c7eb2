"""What the staff roles may do in surveys; crm.roles.roles_sync applies it after migrate."""

from crm.roles import MANAGERS, SUPPORT

_SUPPORT = [
    "surveys.view_survey",
    "surveys.view_results",
    "surveys.view_campaign",
    "surveys.view_churninterview",
    "surveys.add_churninterview",
    "surveys.change_churninterview",
    "surveys.view_reasoncode",
]

ROLE_PERMISSIONS = {
    SUPPORT: _SUPPORT,
    MANAGERS: _SUPPORT
    + [
        "surveys.add_survey",
        "surveys.change_survey",
        "surveys.add_campaign",
        "surveys.change_campaign",
        "surveys.add_reasoncode",
        "surveys.change_reasoncode",
        "surveys.view_churn_report",
    ],
}
