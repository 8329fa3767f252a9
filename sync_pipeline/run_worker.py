"""Run workers forked from a warm process (`run_launcher.PrestartedRunLauncher`).

`python -m sync_pipeline.run_worker [--modules-file FILE]` is started by the launcher with, as its
first line on stdin, the serialized `ExecuteRunArgs` of a run of the job, and warms up: imports
every module the job's runs had imported by their end (FILE), builds the job from that run's code
location and opens its instance. Then, for every further line (the `ExecuteRunArgs` of a run to
execute) it forks a child, answers the child's pid on stdout, and waits for the next line, while
idle importing what the children have since written to FILE. The child executes the run with
Dagster's own `dagster api execute_run` (the command Dagster's Docker and Kubernetes launchers
start per run: it reports the run worker's start, executes the run, records every event, turns
SIGTERM into a cancelation), writes the modules it ended with to FILE, and exits: one process per
run, as with every launcher, but started in milliseconds with everything imported. End of input
ends the warm process; running children finish on their own.

Why the runs' modules: much of what a run imports is imported on first use, after the run
has begun (Dagster's storage and executor, pandera's validation backends, ...), a second or more
on a small machine; imported ahead, they cost the run nothing. Why fork: a new interpreter
importing all that takes seconds; a fork of one that has, milliseconds (the idea of Python's
`multiprocessing` forkserver, and of Dagster's `forkserver` start method for steps). The warm
process forks only while it has no other thread, so each child starts with consistent locks.
"""

import argparse
import importlib
import json
import os
import select
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from dagster import DagsterInstance, deserialize_value

from sync_pipeline.dagster_private import ExecuteRunArgs, api_cli, recon_job_from_origin

LEARN_EVERY_S = 1.0
"""How often an idle warm process looks for modules its children imported that it has not."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules-file", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = Lines(sys.stdin.fileno())
    sample = lines.next()
    if not sample:
        return
    learned = learn(args.modules_file, None)
    warm_up(deserialize_value(sample, ExecuteRunArgs))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    while (line := lines.next(timeout=LEARN_EVERY_S)) != "":
        if line is None:  # idle
            learned = learn(args.modules_file, learned)
            continue
        if threading.active_count() > 1:
            raise SystemExit("threads are running in the warm process: forking would not be safe")
        pid = os.fork()
        if pid == 0:
            execute_and_exit(line, args.modules_file)
        print(pid, flush=True)


class Lines:
    """Lines read from a pipe, with a timeout. Read from the descriptor itself: a line waiting in
    Python's own read-ahead buffer would be invisible to `select`."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def next(self, timeout: float | None = None) -> str | None:
        """The next line; None when none came within `timeout`; "" at the end of input."""
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], timeout)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return ""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


def learn(path: Path | None, seen: float | None) -> float | None:
    """Import the modules listed in `path` if it changed since `seen` (its modification time);
    returns the time now seen."""
    try:
        changed = path.stat().st_mtime if path is not None else None
    except OSError:
        return seen
    if changed != seen:
        preload(remembered(path))
    return changed


def execute_and_exit(execute_run_args: str, modules_file: Path | None) -> None:
    """In the forked child: run, remember the modules, exit without the parent's exit hooks."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stdout is the parent's answer channel
    code = 1
    try:
        api_cli.main(["execute_run", execute_run_args], standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if modules_file is not None:
            remember(modules_file, list(sys.modules))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def remembered(path: Path | None) -> list[str]:
    try:
        return json.loads(path.read_text()) if path is not None else []
    except (OSError, ValueError):
        return []


def preload(modules: list[str]) -> None:
    """Import what the last run had imported. A module that cannot be imported on its own here
    (an optional dependency's shim, a module made at run time) is left to the run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in modules:
            if module in sys.modules or module in ("__main__", "__mp_main__"):
                continue
            try:
                importlib.import_module(module)
            except Exception:  # noqa: S110 (nothing is lost: the run imports what it needs)
                pass


def warm_up(sample: ExecuteRunArgs) -> None:
    """Build the job and open the instance as a run of the job does (later runs use the same
    code location and instance: the launcher checks), then close it: the first build and open
    cost far more than later ones, and no connection may be shared with the children."""
    recon_job_from_origin(sample.job_origin).get_definition()
    with DagsterInstance.from_ref(sample.instance_ref) as instance:
        instance.get_run_by_id(sample.run_id)


def remember(path: Path, modules: list[str]) -> None:
    """Replace the file in one step, so a warm process starting meanwhile reads a whole list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        json.dump(modules, out)
    os.replace(out.name, path)


if __name__ == "__main__":
    main()
