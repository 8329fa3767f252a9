"""The warm process (run_worker.py): its memory of what a run imports (written whole, read back,
imported ahead, whatever cannot be imported on its own left to the run, looked at again when it
changes) and its input, read line by line with a timeout. Forking runs from it under the daemon,
and terminating them, is in test_on_demand_daemon.py."""

import os
import sys

from sync_pipeline.run_worker import Lines, learn, preload, remember, remembered


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


def test_what_the_children_learn_is_imported_when_it_changes(tmp_path, monkeypatch):
    listing = tmp_path / "modules.json"
    assert learn(listing, None) is None  # nothing learned yet
    remember(listing, ["warm_probe_2"])
    (tmp_path / "warm_probe_2.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "warm_probe_2", raising=False)
    seen = learn(listing, None)
    assert seen == listing.stat().st_mtime and "warm_probe_2" in sys.modules
    monkeypatch.delitem(sys.modules, "warm_probe_2")
    assert learn(listing, seen) == seen and "warm_probe_2" not in sys.modules  # unchanged


def test_input_lines_with_a_timeout():
    read_end, write_end = os.pipe()
    lines = Lines(read_end)
    assert lines.next(timeout=0) is None  # nothing yet
    os.write(write_end, b"first\nsec")
    assert lines.next(timeout=0) == "first"
    assert lines.next(timeout=0) is None  # half a line
    os.write(write_end, b"ond\n")
    assert lines.next() == "second"
    os.close(write_end)
    assert lines.next() == ""  # end of input
    os.close(read_end)
