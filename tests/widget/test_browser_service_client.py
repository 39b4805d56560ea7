"""A JupyterLab pointing at a channels service (``ChannelsApp.service_url``), in real
Chromium: its widgets connect to the service, not to the lab, and two people with two
tokens chat there.

This module's ``lab`` replaces the session's: a JupyterLab whose users use ada's token
at the service (``ChannelsApp.service_token``); grace's widget is given her own token.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator

import pytest

from ..service_support import SpawnedService, token_of
from .conftest import Lab, OpenNotebook
from .test_browser import widget_cell
from .test_browser_service import chat, service_for


@pytest.fixture(scope="module")
def service_and_lab(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SpawnedService, Lab]]:
    root = tmp_path_factory.mktemp("lab-service-client")
    lab = Lab(root / "lab")
    service = service_for(lab, root / "service").start()
    try:
        lab.configure(
            {"ChannelsApp": {"service_url": service.http_url, "service_token": token_of("ada")}}
        )
        lab.ready_path = "api/status"  # it has no channels endpoint
        lab.start()
        try:
            yield service, lab
        finally:
            lab.stop()
    finally:
        service.stop()


@pytest.fixture(scope="module")
def lab(service_and_lab: tuple[SpawnedService, Lab]) -> Lab:
    return service_and_lab[1]


@pytest.fixture(scope="module")
def service(service_and_lab: tuple[SpawnedService, Lab]) -> SpawnedService:
    return service_and_lab[0]


def test_widgets_of_a_lab_pointing_at_a_service_connect_to_it_and_two_tokens_chat(
    lab: Lab, service: SpawnedService, open_notebook: OpenNotebook
) -> None:
    topic = "svc:lab"
    grace_cell = (
        "from jupyter_channels import ChannelWidget\n"
        f"w = ChannelWidget({topic!r}, token={token_of('grace')!r})\nw"
    )
    pages = {
        "ada": open_notebook(widget_cell(topic), user="ada"),  # the lab's service token
        "grace": open_notebook(grace_cell, user="grace"),
    }

    chat(service, topic, pages, [("ada", "hi, via the service"), ("grace", "hi back")])

    with pytest.raises(urllib.error.HTTPError) as missing:
        lab.rest("GET", "api/channels/topics")
    assert missing.value.code == 404
