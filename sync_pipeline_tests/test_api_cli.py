"""`sync-pipeline api` starts on a fresh clone with nothing set up: no environment variables, no
data directory yet (it once stopped with "unable to open database file"). Every call is then
refused (no token is configured) until the environment names tokens or the Supabase keys."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from sync_pipeline.api.app import PREFIX

CONFIGURATION = ("SYNC_", "CRM_", "METAKOCKA_", "SUPABASE_", "DAGSTER_")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_api_starts_on_a_fresh_clone(tmp_path: Path):
    clone = tmp_path / "clone"  # a working directory without .sync_pipeline/
    clone.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURATION)}
    port = free_port()
    command = Path(sys.executable).parent / "sync-pipeline"
    server = subprocess.Popen(
        [str(command), "api", "--port", str(port)],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, ended as a whole below
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")
            try:
                if requests.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the API did not start within 60 s"
            time.sleep(0.3)
        refused = requests.post(
            f"{url}{PREFIX}/sync",
            json={"documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c"},
            timeout=10,
        )
        assert refused.status_code == 401
        assert (clone / ".sync_pipeline" / "sync.db").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)
