"""The HTTP session both API clients use.

Why one place: a session must fit the client's concurrency (one pooled connection per request
slot), must never resend a request by itself (a resent create could be a duplicate; retries are
the policy's business, `retry.py`), and must not redo per call what can be done once. requests'
`trust_env` looks the proxy variables up in `os.environ` and stats `~/.netrc` on every request,
about a fifth of a call's CPU time in profiles; the proxies are read from the environment once,
here, instead (so `HTTPS_PROXY` / `NO_PROXY` still apply), and the APIs' credentials travel in
headers or bodies, never in a netrc file.
"""

import requests
from requests.adapters import HTTPAdapter


def new_session(base_url: str, pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json"})
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    return session
