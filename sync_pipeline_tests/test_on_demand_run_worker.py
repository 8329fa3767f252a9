"""The warm process's memory of what a run imports (run_worker.py): written whole, read back,
and imported ahead with whatever cannot be imported on its own left to the run. Forking runs from
it under the daemon, and terminating them, is in test_on_demand_daemon.py."""

import sys

from sync_pipeline.run_worker import preload, remember, remembered


def test_the_modules_of_the_last_run_are_imported_ahead(tmp_path, monkeypatch):
    listing = tmp_path / "run_workers" / "sync_documents.json"
    assert remembered(listing) == []  # no run yet
    remember(listing, ["warm_probe", "no_such_module_anywhere", "__main__"])
    assert remembered(listing) == ["warm_probe", "no_such_module_anywhere", "__main__"]
    assert [p.name for p in listing.parent.iterdir()] == ["sync_documents.json"]

    (tmp_path / "warm_probe.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "warm_probe", raising=False)
    preload(remembered(listing))
    assert sys.modules["warm_probe"].IMPORTED
    assert "no_such_module_anywhere" not in sys.modules
    monkeypatch.delitem(sys.modules, "warm_probe")

    listing.write_text("not json")
    assert remembered(listing) == []
