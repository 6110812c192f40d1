"""Django admin for superusers and org owners.

Superusers see everything. A user who owns an organization may sign in and sees and
edits only the rows of the orgs they own; nobody else gets the admin.
"""

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db.models import Model
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from .models import Membership, Organization
from .permissions import owned_organizations


def is_owner_anywhere(user) -> bool:
    # Asked for every registered model and permission on each admin page: once per user
    # object, which is the request's own (loaded again on every request).
    if not hasattr(user, "_owner_anywhere"):
        user._owner_anywhere = user.is_active and (user.is_superuser or owned_organizations(user).exists())
    return user._owner_anywhere


class OwnerAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        if not is_owner_anywhere(user):
            raise ValidationError(
                "This account cannot use the admin: only organization owners and superusers can.",
                code="invalid_login",
            )


class OwnerAdminSite(admin.AdminSite):
    site_header = "AgentPress administration"
    login_form = OwnerAuthenticationForm

    def has_permission(self, request):
        return is_owner_anywhere(request.user)


owner_admin_site = OwnerAdminSite(name="admin")


class OrgScopedAdmin(admin.ModelAdmin):
    """Rows are scoped to the organizations the user owns, through ``org_field``."""

    org_field = "organization"

    def _owned(self, request):
        return owned_organizations(request.user)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.org_field}__in": self._owned(request)})

    def _may(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        if not is_owner_anywhere(request.user):
            return False
        if obj is None:
            return True
        return self._owned(request).filter(pk=self.org_id_of(obj)).exists()

    def org_id_of(self, obj) -> int:
        return obj.organization_id

    def has_module_permission(self, request):
        return self._may(request)

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_add_permission(self, request):
        return self._may(request)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj)

    def row_label(self, obj) -> str:
        return str(obj.pk)

    def apply_each(self, request, queryset, change, *, noun: str, verb: str, refusals: tuple) -> None:
        """Call a service on each selected row; report how many changed and why the others did not."""
        changed, refused = 0, []
        for obj in queryset:
            try:
                change(obj)
                changed += 1
            except refusals as exc:
                refused.append(
                    f"{self.row_label(obj)}: {' '.join(getattr(exc, 'messages', None) or [str(exc)])}"
                )
        self.message_user(request, f"{changed} {noun}(s) {verb}.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not changed: " + "; ".join(refused), messages.WARNING)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            owned = self._owned(request)
            related: type[Model] = db_field.related_model
            if related is Organization:
                kwargs["queryset"] = owned
            elif related is User:
                kwargs["queryset"] = User.objects.filter(memberships__organization__in=owned).distinct()
            elif hasattr(related, "organization"):
                kwargs["queryset"] = related._default_manager.filter(organization__in=owned)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization, site=owner_admin_site)
class OrganizationAdmin(OrgScopedAdmin):
    org_field = "pk"
    list_display = ["name", "slug", "automations_enabled", "max_concurrent_runs", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "automations_enabled", "retention_days", "timezone"]}),
        (
            "Admission and daily budgets",
            {
                "fields": ["max_concurrent_runs", "daily_run_limit", "daily_token_limit", "daily_cost_limit"],
                "description": "Empty: the deployment's default limit (no budget). Days are counted in the "
                "time zone above; work over a limit or budget waits pending and is never dropped; a raised limit "
                "admits it at once.",
            },
        ),
    ]

    def org_id_of(self, obj):
        return obj.pk

    def get_queryset(self, request):
        qs = Organization.objects.all()
        return qs if request.user.is_superuser else qs.filter(pk__in=self._owned(request))

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Membership, site=owner_admin_site)
class MembershipAdmin(OrgScopedAdmin):
    list_display = ["user", "organization", "role", "permissions"]
    list_filter = ["role"]
    search_fields = ["user__username", "organization__slug"]


class SuperuserOnlyMixin:
    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class ScopedUserAdmin(SuperuserOnlyMixin, UserAdmin):
    """Owners may look users up (for memberships); only superusers edit them."""

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(memberships__organization__in=owned_organizations(request.user)).distinct()

    def has_view_permission(self, request, obj=None):
        return is_owner_anywhere(request.user)


class OwnTokenAdmin(TokenAdmin):
    """A user creates, sees and revokes their own API tokens; superusers all of them."""

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = User.objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request):
        return is_owner_anywhere(request.user)

    has_view_permission = has_change_permission = has_delete_permission = lambda self, request, obj=None: (
        is_owner_anywhere(request.user)
        and (obj is None or request.user.is_superuser or obj.user_id == request.user.pk)
    )

    def has_add_permission(self, request):
        return is_owner_anywhere(request.user)


owner_admin_site.register(User, ScopedUserAdmin)
owner_admin_site.register(Group, type("ScopedGroupAdmin", (SuperuserOnlyMixin, GroupAdmin), {}))
owner_admin_site.register(TokenProxy, OwnTokenAdmin)
