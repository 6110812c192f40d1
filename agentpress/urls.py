from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agentpress.ops import views as ops_views
from agentpress.orgs import views as org_views
from agentpress.orgs.admin import owner_admin_site

urlpatterns = [
    path("", org_views.home, name="home"),
    path("favicon.ico", org_views.favicon, name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", owner_admin_site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("automation.api.urls")),
    path("hooks/", include("automation.providers.urls")),
    path("orgs/<slug:org_slug>/", include("monitor.urls")),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
]
