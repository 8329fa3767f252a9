"""What an operator sees in the launchpad: every resource and op config field says what it is,
and an on-demand run without an organization is refused before it reads or writes anything."""

from sync_pipeline.definitions import build_definitions
from sync_pipeline.ops.sync_documents import OP_NAME


def _fields(config_type, path=""):
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield f"{path}{name}", field
        yield from _fields(field.config_type, f"{path}{name}.")


def test_every_resource_field_has_a_description(pipeline_env):
    defs = build_definitions(pipeline_env)
    missing = [
        f"{key}.{name}"
        for key, resource in defs.resources.items()
        for name, field in _fields(resource.get_resource_definition().config_schema.config_type)
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_an_on_demand_run_without_an_organization_is_refused(pipeline_env, dagster_instance):
    job = build_definitions(pipeline_env).resolve_job_def("sync_documents")
    config = {"ops": {OP_NAME: {"config": {"organization_id": "", "document_ids": ["x"]}}}}
    result = job.execute_in_process(
        run_config=config, instance=dagster_instance, raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "organization_id" in str(failure.step_failure_data.error)
    assert "at least 1 character" in str(failure.step_failure_data.error)
