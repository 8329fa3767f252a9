"""The clients' HTTP session: the environment's proxies are read once, and still honoured."""

from sync_pipeline.adapters.http_session import new_session


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
