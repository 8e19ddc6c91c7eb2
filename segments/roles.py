"""What the staff roles may do in segments; crm.roles.roles_sync applies it after migrate."""

from crm.roles import MANAGERS, SUPPORT

ROLE_PERMISSIONS = {
    SUPPORT: ["segments.view_bucket"],
    MANAGERS: [
        "segments.add_bucket",
        "segments.change_bucket",
        "segments.delete_bucket",
        "segments.view_bucket",
        "segments.view_roi",
    ],
}
