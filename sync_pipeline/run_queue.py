"""The run queue: Dagster's `QueuedRunCoordinator`, which also tags an on-demand run launched by
hand with its organization before the queue first looks at it.

Why: the queue's limits (`dagster.yaml`, `tag_concurrency_limits`: one on-demand run per
organization, two runs per Metakocka company) count run tags. The request sensor tags the runs
it asks for, and a partition's tags come with a nightly run however it is launched; but a
`sync_documents` run launched from the launchpad carries only the tags the operator typed. Its
organization is in its run config, and Dagster turns config into tags only through partitions
(which would put on-demand runs under the nightly run's one-per-partition limit). `submit_run` is
where every run enters the queue, in the webserver (UI, GraphQL) and the daemon (sensors,
schedules) alike, so tags added there are in place before the run can be dequeued.

The organization's name, id and company come from `SYNC_ORGANIZATIONS` in the process's
environment (every Dagster process has the code location's environment, docs/deploy.md); without
it the run still gets `sync_pipeline/organization`, the per-organization limit's tag.
"""

import dagster as dg

from sync_pipeline.ops.launch import JOB_NAME, launch_tags
from sync_pipeline.settings import Settings


class OrganizationTaggingRunCoordinator(dg.QueuedRunCoordinator):
    """`QueuedRunCoordinator` (same config, same limits) that adds an on-demand run's missing
    organization tags (`ops.launch.launch_tags`) as the run is submitted."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if run.job_name == JOB_NAME:
            missing = launch_tags(run.job_name, run.run_config, run.tags, self._organizations())
            if missing:
                self._instance.add_run_tags(run.run_id, missing)
                tagged = self._instance.get_run_by_id(run.run_id)
                context = context._replace(dagster_run=tagged or run)
        return super().submit_run(context)

    def _organizations(self):
        """The configured organizations; none when this process cannot read them (the run is
        still queued, with the tag its config gives)."""
        try:
            return Settings.from_env().organizations
        except (OSError, ValueError, KeyError) as exc:  # a pydantic ValidationError is a ValueError
            self._logger.warning(f"SYNC_ORGANIZATIONS unreadable here ({exc}): tagging by id only")
            return ()
