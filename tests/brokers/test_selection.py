"""Choosing a broker with ``broker_url``: optional brokers are imported only when chosen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jupyter_channels.app import ChannelsApp
from jupyter_channels.brokers.local import LocalBroker


def test_an_empty_broker_url_builds_the_local_broker(tmp_path):
    app = ChannelsApp(broker_url="", history_path=str(tmp_path / "h.sqlite"))

    assert isinstance(app.make_broker(), LocalBroker)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example:6380/2"])
def test_redis_urls_build_the_redis_broker_with_the_configured_sizes(url):
    from jupyter_channels.brokers.redis import RedisBroker

    broker = ChannelsApp(broker_url=url, history_size=7, presence_ttl=3.0).make_broker()

    assert isinstance(broker, RedisBroker)
    assert (broker.store.history_size, broker.presence_ttl) == (7, 3.0)


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_presence_ttl_must_be_positive(ttl):
    with pytest.raises(Exception, match="presence_ttl must be positive"):
        ChannelsApp(presence_ttl=ttl)


WITHOUT_REDIS = """
import sys
sys.modules["redis"] = None  # as if the redis package were not installed
import jupyter_channels, jupyter_channels.app, jupyter_channels.brokers
from jupyter_channels.app import ChannelsApp
ChannelsApp(broker_url="")
try:
    ChannelsApp(broker_url="redis://127.0.0.1:6379/0")
except Exception as e:
    print(type(e).__name__, e)
"""


def test_without_the_redis_extra_the_package_imports_and_redis_fails_naming_the_extra():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIS], capture_output=True, text=True, check=True
    )

    assert result.stdout.startswith("TraitError ")
    assert "pip install 'jupyter-channels[redis]'" in result.stdout


def test_logs_show_a_redis_url_without_its_password():
    from jupyter_channels.history.redis import redact

    assert redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("rediss://user:s3cret@h/1") == "rediss://user:***@h/1"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
