"""The Django middleware labels requests by the URL pattern, not the raw path."""

from __future__ import annotations

import pytest

django = pytest.importorskip("django", reason="django not installed")


def test_django_middleware_labels_by_route() -> None:
    """Two requests to one pattern land under its route; the response is untouched."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["testserver"],
            MIDDLEWARE=["memwarden.integrations.wsgi.DjangoMiddleware"],
            SECRET_KEY="test-only",
        )
        django.setup()
    from django.test import Client

    from memwarden.integrations.wsgi import DjangoMiddleware

    DjangoMiddleware.meter = None  # a fresh meter for this test
    client = Client()
    assert client.get("/items/4/").content == b"4"
    assert client.get("/items/5/").content == b"5"
    assert DjangoMiddleware.meter is not None
    assert [r.route for r in DjangoMiddleware.meter.routes()] == ["GET /items/<int:pk>/"]


def _item(request: object, pk: int) -> object:
    from django.http import HttpResponse

    return HttpResponse(str(pk))


def _urls() -> list[object]:
    from django.urls import path

    return [path("items/<int:pk>/", _item)]


def __getattr__(name: str) -> object:
    # Django reads ROOT_URLCONF's urlpatterns lazily, after settings are configured.
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)
