from django.urls import path

from automation.providers import views

urlpatterns = [
    path("actions/<uuid:action_id>/", views.action_hook, name="action-hook"),
]
