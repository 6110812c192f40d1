"""Who may do what in an organization (DESIGN §8), answered in one place.

Owners and admins hold every permission and see org-wide data; a member holds
``actions:manage`` only when granted, and then sees only what runs as themselves.
"""

from dataclasses import dataclass

from django.http import Http404

from .models import MANAGE_ACTIONS, Membership, Organization, Role


@dataclass(frozen=True)
class Access:
    organization: Organization
    user: object
    membership: Membership | None

    @property
    def is_member(self) -> bool:
        return self.membership is not None or self.user.is_superuser

    @property
    def org_wide(self) -> bool:
        """Sees every row of the org, not only the rows that run as themselves."""
        if self.user.is_superuser:
            return True
        return self.membership is not None and self.membership.role in (Role.OWNER, Role.ADMIN)

    def has(self, permission: str) -> bool:
        if self.org_wide:
            return True
        return self.membership is not None and permission in (self.membership.permissions or [])

    @property
    def can_manage_actions(self) -> bool:
        return self.has(MANAGE_ACTIONS)

    @property
    def is_owner(self) -> bool:
        return self.user.is_superuser or (self.membership is not None and self.membership.role == Role.OWNER)


def access_for(user, organization: Organization) -> Access:
    membership = None
    if user.is_authenticated:
        membership = Membership.objects.filter(organization=organization, user=user).first()
    return Access(organization=organization, user=user, membership=membership)


def get_access_or_404(user, org_slug: str) -> Access:
    """The caller's access to an org; 404 when they are not a member (its existence stays hidden)."""
    organization = Organization.objects.filter(slug=org_slug).first()
    if organization is None or not user.is_authenticated:
        raise Http404("No such organization.")
    access = access_for(user, organization)
    if not access.is_member:
        raise Http404("No such organization.")
    return access


def organizations_for(user):
    if not user.is_authenticated:
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user)


def owned_organizations(user):
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user, memberships__role=Role.OWNER)
