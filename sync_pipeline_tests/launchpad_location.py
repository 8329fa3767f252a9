"""The code location as `dagster dev` loads it, for an in-process workspace in the tests: built
when the workspace loads it (`@dg.definitions`), so it reads the test's environment, not the one
`sync_pipeline.definitions` saw when an earlier test imported it."""

import dagster as dg

from sync_pipeline.definitions import build_definitions
from sync_pipeline.settings import Settings


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
