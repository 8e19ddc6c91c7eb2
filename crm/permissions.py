"""One mixin for every staff view: login required, then the view's permissions, on the server."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied

from . import roles


class StaffPermissionMixin(LoginRequiredMixin):
    """Anonymous users go to the login page; signed-in users without the permission get 403.

    `permission_required` is a string or a tuple of "app.codename"; all are required.
    """

    permission_required: str | tuple[str, ...] = "crm.view_customer"

    def get_permission_required(self) -> tuple[str, ...]:
        perms = self.permission_required
        return (perms,) if isinstance(perms, str) else tuple(perms)

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not request.user.has_perms(self.get_permission_required()):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)


def is_manager(user) -> bool:
    return user.is_superuser or user.groups.filter(name=roles.MANAGERS).exists()
