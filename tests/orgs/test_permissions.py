import pytest
from django.http import Http404

from agentpress.orgs.permissions import access_for, get_access_or_404

pytestmark = pytest.mark.sqlite


@pytest.mark.parametrize(
    "who, member, manage, org_wide",
    [
        ("owner", True, True, True),
        ("admin", True, True, True),
        ("member", True, True, False),
        ("viewer", True, False, False),
        ("outsider", False, False, False),
        ("other_owner", False, False, False),
        ("superuser", True, True, True),
    ],
)
def test_permission_matrix(roster, who, member, manage, org_wide):
    access = access_for(getattr(roster, who), roster.org)
    assert (access.is_member, access.can_manage_actions, access.org_wide) == (member, manage, org_wide)


def test_non_members_get_404_not_403(roster):
    for who in ("outsider", "other_owner"):
        with pytest.raises(Http404):
            get_access_or_404(getattr(roster, who), "acme")
    with pytest.raises(Http404):
        get_access_or_404(roster.owner, "no-such-org")
    assert get_access_or_404(roster.other_owner, "globex").is_owner
