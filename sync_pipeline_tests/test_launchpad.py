"""What an operator sees in the launchpad, through the GraphQL the UI uses: every resource field
says what it is; the launchpad opens with the fields an operator sets and nothing else; a launch
with an empty organization or document id is refused before any run exists; and a run launched
by hand carries its organization's tags, so the run queue's limits apply to it."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql

from sync_pipeline.definitions import build_definitions
from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.ops.launch import JOB_NAME, OP_NAME
from sync_pipeline.runs import (
    METAKOCKA_COMPANY_TAG,
    ORGANIZATION_ID_TAG,
    ORGANIZATION_NAME_TAG,
    TAG_ORGANIZATION,
)

from .graphql_helpers import LAUNCH, RUN_STATUS

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_YAML = """
query DefaultYaml($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) { ... on RunConfigSchema { rootDefaultYaml } }
}
"""
"""The config the launchpad opens with (the UI's `rootDefaultYaml`)."""


def _fields(config_type, path=""):
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield f"{path}{name}", field
        yield from _fields(field.config_type, f"{path}{name}.")


def _unconfigured_schema(resource):
    """The resource's own schema under the configuration fixed in code (the Resources page
    shows these fields)."""
    if not isinstance(resource, dg.ResourceDefinition):  # a Pythonic resource object
        resource = resource.get_resource_definition()
    schema = resource.config_schema
    while getattr(schema, "parent_def", None) is not None:  # a configured definition's
        schema = schema.parent_def.config_schema
    return schema


def test_every_resource_field_has_a_description(pipeline_env):
    defs = build_definitions(pipeline_env)
    missing = [
        f"{key}.{name}"
        for key, resource in defs.resources.items()
        for name, field in _fields(_unconfigured_schema(resource).config_type)
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_an_on_demand_run_without_an_organization_is_refused(pipeline_env, dagster_instance):
    job = build_definitions(pipeline_env).resolve_job_def(JOB_NAME)
    config = {"ops": {OP_NAME: {"config": {"organization_id": "", "document_ids": ["x"]}}}}
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        job.execute_in_process(run_config=config, instance=dagster_instance)
    assert "organization_id" in str(refused.value)
    assert "at least 1 character" in str(refused.value)
    assert dagster_instance.get_runs_count() == 0  # refused before it read or wrote anything


@dataclass
class Launchpad:
    context: object
    instance: dg.DagsterInstance

    def selector(self, job_name: str) -> dict:
        (location,) = self.context.code_location_names
        return {"repositoryLocationName": location, "repositoryName": "__repository__",
                "pipelineName": job_name}  # fmt: skip

    def opens_with(self, job_name: str) -> str:
        answer = self.query(DEFAULT_YAML, {"selector": self.selector(job_name)})
        return answer["runConfigSchemaOrError"]["rootDefaultYaml"]

    def launch(self, job_name: str, run_config: dict) -> dict:
        selector = self.selector(job_name)
        selector["jobName"] = selector.pop("pipelineName")
        params = {"selector": selector, "runConfigData": run_config}
        return self.query(LAUNCH, {"executionParams": params})["launchRun"]

    def query(self, query: str, variables: dict) -> dict:
        return execute_dagster_graphql(self.context, query, variables).data


@pytest.fixture
def launchpad(pipeline_env):
    """The UI's GraphQL over the code location, on an instance with the repo's run queue."""
    run_queue = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_coordinator"]
    origin = LoadableTargetOrigin(
        module_name="sync_pipeline_tests.launchpad_location", attribute="defs"
    )
    with dg.instance_for_test(overrides={"run_coordinator": run_queue}) as instance:
        with in_process_test_workspace(instance, origin) as context:
            yield Launchpad(context, instance)


def on_demand(**config) -> dict:
    return {"ops": {OP_NAME: {"config": config}}}


def test_the_launchpad_opens_with_what_an_operator_sets_only(launchpad):
    # no resource config (timeouts, retry budgets, the organizations' JSON): it is fixed in code
    assert yaml.safe_load(launchpad.opens_with(JOB_NAME)) == on_demand(
        all_unsynced=False, direction="crm_to_metakocka", document_ids=[], dry_run=False
    )
    nightly = yaml.safe_load(launchpad.opens_with(NIGHTLY_JOB_NAME))
    assert set(nightly) == {"ops", "execution"}
    # the fields the request sensor used to fill in are gone from the schema
    refused = launchpad.launch(JOB_NAME, on_demand(organization_id="x", request_ids=[]))
    assert refused["__typename"] == "RunConfigValidationInvalid"
    assert 'unexpected config entry "request_ids"' in refused["errors"][0]["message"]


def test_a_launch_naming_an_empty_id_is_refused_before_any_run_exists(launchpad, sandbox):
    org = sandbox.organizations[0]
    refusals = {
        "organization_id: String should have at least 1 character": on_demand(
            organization_id="", document_ids=["11111111-1111-4111-8111-111111111111"]
        ),
        "document_ids: '' is not a CRM document id (uuid)": on_demand(
            organization_id=org.id, document_ids=[""]
        ),
        "name at least one document id, or set all_unsynced": on_demand(organization_id=org.id),
    }
    for reason, run_config in refusals.items():
        answer = launchpad.launch(JOB_NAME, run_config)
        assert answer["__typename"] == "PythonError"
        assert f"{JOB_NAME} not launched: " in answer["message"] and reason in answer["message"]
    assert launchpad.instance.get_runs_count() == 0


def test_a_run_launched_by_hand_carries_its_organization_tags(launchpad, sandbox):
    org = sandbox.organizations[0]
    launched = launchpad.launch(JOB_NAME, on_demand(organization_id=org.id, all_unsynced=True))
    assert launched["__typename"] == "LaunchRunSuccess"
    run = launchpad.query(RUN_STATUS, {"runId": launched["run"]["runId"]})["runOrError"]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["status"] == "QUEUED"  # waiting in the queue, already tagged
    assert tags[TAG_ORGANIZATION] == tags[ORGANIZATION_ID_TAG] == org.id  # one run per organization
    assert tags[ORGANIZATION_NAME_TAG] == org.name
    assert tags[METAKOCKA_COMPANY_TAG] == org.metakocka_company_id  # two per Metakocka company
