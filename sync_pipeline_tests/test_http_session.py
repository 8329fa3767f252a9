"""The clients' HTTP session: the environment's proxies are read once, and still honoured; the
request slots bound what is in flight."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sync_pipeline.adapters.http_session import RequestSlots, new_session


def test_proxies_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "crm.internal")
    session = new_session("https://mk.example/rest/eshop/v1/", pool_size=2)
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.trust_env is False  # not looked up again on every request
    assert new_session("https://crm.internal/rest/v1/", pool_size=4).proxies == {}


def test_the_pool_fits_the_concurrency_and_nothing_is_resent():
    adapter = new_session("http://127.0.0.1:1/", pool_size=3).get_adapter("http://127.0.0.1:1/")
    assert adapter._pool_maxsize == 3
    assert adapter.max_retries.total == 0


def test_request_slots_keep_at_most_the_limit_in_flight():
    slots, lock = RequestSlots(2), threading.Lock()
    in_flight, most = 0, 0

    def exchange(_):
        nonlocal in_flight, most
        with slots:
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.01)
            with lock:
                in_flight -= 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(exchange, range(24)))
    assert most == 2
    with pytest.raises(ValueError):  # bounded: a release without an acquire is a bug, not a slot
        slots.__exit__(None, None, None)
