"""django-tables2 tables of the crm screens."""

import django_tables2 as tables
from django.core.paginator import EmptyPage, Page
from django.db.models import QuerySet
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django_tables2.paginators import LazyPaginator
from django_tables2.rows import BoundRow

from .models import Customer

MAX_OFFSET = 100_000  # rows; pages beyond are refused (narrow the filters instead)
DEFERRED_JOIN_FROM = 500  # offset from which a page is fetched ids-first


class BoundedLazyPaginator(LazyPaginator):
    """No COUNT(*) (LazyPaginator: a look-ahead row says whether a next page exists), no page
    beyond MAX_OFFSET rows, and deep pages fetched as a "deferred join": first the page's ids
    with OFFSET over the customer table alone (index-only where the sort allows), then the 50
    rows with their joins. A plain OFFSET would join owner and metrics for every skipped row.
    """

    max_offset = MAX_OFFSET
    too_deep = False  # set when a page beyond max_page was asked for (max_page is shown)

    def validate_number(self, number):
        number = super().validate_number(number)
        if number > self.max_page:
            self.too_deep = True
            number = self.max_page
        return number

    @property
    def max_page(self) -> int:
        return self.max_offset // self.per_page + 1

    def page(self, number):
        page = self._page(number)
        self._num_pages = min(self._num_pages, self.max_page)  # no "next" past the limit
        return page

    def _page(self, number):
        number = self.validate_number(number or 1)
        bottom = (number - 1) * self.per_page
        queryset = getattr(getattr(self.object_list, "data", None), "data", None)
        if bottom < DEFERRED_JOIN_FROM or not isinstance(queryset, QuerySet):
            return super().page(number)
        top = bottom + self.per_page + self.orphans + (self.look_ahead - 1) * self.per_page + 1
        ids = list(queryset.values_list("pk", flat=True)[bottom:top])
        position = {pk: i for i, pk in enumerate(ids)}
        records = sorted(queryset.order_by().filter(pk__in=ids), key=lambda r: position[r.pk])
        table = self.object_list.table
        objects = [BoundRow(record, table=table) for record in records]
        if len(objects) > self.per_page + self.orphans:
            self._num_pages = number + len(objects) // self.per_page
            objects = objects[: self.per_page]
        elif number != 1 and len(objects) <= self.orphans:
            raise EmptyPage(_("That page contains no results"))
        else:
            self._num_pages = self._final_num_pages = number
        return Page(objects, number, self)


class CapPerPageMixin:
    MAX_PER_PAGE = 200

    def paginate(self, paginator_class=None, per_page=None, page=1, *args, **kwargs):
        per_page = max(1, min(int(per_page or self.per_page_default), self.MAX_PER_PAGE))
        return super().paginate(paginator_class, per_page, page, *args, **kwargs)

    per_page_default = 50


class CustomerTable(CapPerPageMixin, tables.Table):
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name", "id"),
        verbose_name=_("Name"),
    )
    # Every sort ends with the id: ties (same effort, same city) must not reorder between
    # requests, or paging would repeat some customers and skip others.
    email = tables.EmailColumn(order_by=("email", "id"), verbose_name=_("Email"))
    city = tables.Column(order_by=("city", "id"), verbose_name=_("City"))
    service_effort = tables.Column(
        order_by=("service_effort", "id"), verbose_name=_("Service effort")
    )
    influence = tables.Column(order_by=("influence", "id"), verbose_name=_("Influence"))
    # Sortable columns are exactly those with an index (crm migration 0005); sorting a million
    # rows by a joined column (owner name, metrics, bucket) would sort them all for one page.
    phone = tables.Column(verbose_name=_("Phone"), orderable=False)
    owner = tables.Column(verbose_name=_("Owner"), orderable=False)
    buyer_type = tables.Column(
        accessor="metrics__buyer_type", verbose_name=_("Buyer type"), default="", orderable=False
    )
    decile = tables.Column(
        accessor="metrics__value_decile", verbose_name=_("Decile"), default="", orderable=False
    )
    channel = tables.Column(
        accessor="metrics__preferred_channel",
        verbose_name=_("Channel"),
        default="",
        orderable=False,
    )
    bucket = tables.Column(
        accessor="pk", verbose_name=_("Bucket"), orderable=False, empty_values=()
    )
    # Filtered, not sorted: no index holds the status (crm.models.Customer.Meta.indexes).
    status = tables.Column(verbose_name=_("Status"), orderable=False)

    class Meta:
        model = Customer
        fields = ("id", "email", "phone", "city", "service_effort", "influence")
        sequence = (
            "id",
            "name",
            "email",
            "phone",
            "city",
            "status",
            "owner",
            "service_effort",
            "influence",
            "buyer_type",
            "decile",
            "channel",
            "bucket",
        )
        order_by = ("id",)
        empty_text = _("No customers match.")

    def __init__(self, *args, show_bucket: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not show_bucket:
            self.columns.hide("bucket")

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>', record.status, record.get_status_display()
        )

    def render_buyer_type(self, record):
        return record.metrics.get_buyer_type_display()

    def render_channel(self, record):
        return record.metrics.get_preferred_channel_display()

    def render_bucket(self, record):
        """The current bucket from segments' membership row, joined by the view (no query)."""
        membership = getattr(record, "current_membership", None)
        bucket = getattr(membership, "bucket", None)
        if bucket is None:
            return _("Unsegmented")
        return format_html(
            '<span class="badge" style="border-left: 4px solid {}">{}</span>',
            bucket.colour,
            bucket.name,
        )


class HighValueTable(CapPerPageMixin, tables.Table):
    customers = tables.CheckBoxColumn(accessor="pk", attrs={"th__input": {"id": "select-all"}})
    name = tables.LinkColumn(
        "crm:customer_detail",
        args=[tables.A("pk")],
        accessor="full_name",
        order_by=("last_name", "first_name", "id"),
        verbose_name=_("Name"),
    )
    owner = tables.Column(verbose_name=_("Owner"), default="", order_by=("owner__last_name",))
    contribution_total = tables.Column(verbose_name=_("Lifetime contribution"))
    margin_total = tables.Column(verbose_name=_("Lifetime margin"))
    cost_to_serve_total = tables.Column(verbose_name=_("Cost to serve"))

    class Meta:
        model = Customer
        fields = ("service_effort", "status")
        sequence = (
            "customers",
            "name",
            "owner",
            "service_effort",
            "status",
            "contribution_total",
            "margin_total",
            "cost_to_serve_total",
        )
        order_by = ("-contribution_total",)
        empty_text = _("No accounts in the top 10 %.")

    def _money(self, value):
        return f"{value:,.2f}"

    def render_contribution_total(self, value):
        return self._money(value)

    def render_margin_total(self, value):
        return self._money(value)

    def render_cost_to_serve_total(self, value):
        return self._money(value)
