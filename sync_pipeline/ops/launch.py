"""What launches a `sync_documents` run: its names, the config an operator (or the request sensor)
gives it, the check that refuses a launch with bad ids, and the tags of a run launched by hand.

Light on purpose (Dagster, pydantic and the pure request rules only): the instance's run
coordinator (`sync_pipeline.run_queue`) imports it in the webserver and the daemon, which have no
use for pandas or the sync code behind the job itself (`ops/sync_documents.py`).
"""

from collections.abc import Mapping
from enum import Enum

import dagster as dg
import pydantic
from pydantic import Field

from sync_pipeline.domain.directions import BOTH, CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.sync_request import split_document_ids
from sync_pipeline.runs import SYNC_DOCUMENTS_JOB as JOB_NAME
from sync_pipeline.runs import SYNC_DOCUMENTS_OP as OP_NAME
from sync_pipeline.runs import TAG_ORGANIZATION, organization_run_tags


class SyncDirection(Enum):
    """The launchpad's choice of direction (Dagster config takes an Enum)."""

    crm_to_metakocka = CRM_TO_METAKOCKA
    metakocka_to_crm = METAKOCKA_TO_CRM
    both = BOTH


class SyncDocumentsConfig(dg.Config):
    """What to sync: every field is one an operator sets in the launchpad. The request sensor
    fills in the same fields; which requests a run serves it finds by the run's key
    (`dagster/run_key`), and who asked by its `sync_pipeline/requested_by` tag."""

    organization_id: str = Field(
        min_length=1, description="CRM organization uuid (one of SYNC_ORGANIZATIONS)."
    )
    direction: SyncDirection = Field(
        default=SyncDirection.crm_to_metakocka,
        description="crm_to_metakocka: document_ids are CRM ids (uuids); metakocka_to_crm: "
        "Metakocka ids (mk_id digits); both: either kind. Only pushes in this direction run.",
    )
    document_ids: list[str] = Field(
        default=[], description="Documents to sync (their counterparts are read too)."
    )
    all_unsynced: bool = Field(
        default=False,
        description="Also every document of the source side whose content is not synced yet.",
    )
    dry_run: bool = Field(
        default=False, description="Plan only: push and record nothing, show the plan."
    )

    @pydantic.field_validator("document_ids")
    @classmethod
    def _ids_of_the_source_system(cls, ids: list[str], info: pydantic.ValidationInfo):
        direction = info.data.get("direction")  # absent when the direction itself is invalid
        if direction is not None:
            # a ValueError naming an id that is empty or not of the direction's source system
            split_document_ids(SyncDirection(direction).value, ids)
        return ids

    @pydantic.model_validator(mode="after")
    def _names_what_to_sync(self) -> "SyncDocumentsConfig":
        if not (self.document_ids or self.all_unsynced):
            raise ValueError("name at least one document id, or set all_unsynced")
        return self

    def document_ids_by_system(self) -> tuple[list[str], list[str]]:
        """(CRM ids, Metakocka ids), each without repeats (`split_document_ids`)."""
        return split_document_ids(self.direction.value, self.document_ids)


def _refuse_invalid(run_config: dict) -> dict:
    """The run config as given, once `SyncDocumentsConfig` accepts it.

    Dagster's config types cannot say "a non-empty string" or "a uuid", so the schema alone lets
    `organization_id: ''` through. This mapping runs when a run is created (launchpad, GraphQL,
    a sensor's request, `execute_in_process`), before the run exists: a refused launch creates no
    run and says why in one line."""
    given = run_config["ops"][OP_NAME]["config"]
    try:
        SyncDocumentsConfig(**given)
    except pydantic.ValidationError as exc:
        reasons = "; ".join(_reason(error) for error in exc.errors())
        raise dg.DagsterInvalidConfigError(
            f"{JOB_NAME} not launched: {reasons}", [], given
        ) from None
    return run_config


def _reason(error) -> str:
    """One of pydantic's errors as `field: message` (a rule over several fields names none)."""
    message = error["msg"].removeprefix("Value error, ")
    field = ".".join(str(part) for part in error["loc"])
    return f"{field}: {message}" if field else message


def launch_config() -> dg.ConfigMapping:
    """The job's run config: the op's config fields only, checked at launch (`_refuse_invalid`).
    Resources are configured in code, so the launchpad shows just these fields."""
    return dg.ConfigMapping(
        config_fn=_refuse_invalid,
        config_schema={"ops": {OP_NAME: {"config": SyncDocumentsConfig.to_fields_dict()}}},
        # the op's schema validates the values again; the mapping passes them on as given
        receive_processed_config_values=False,
    )


def launch_tags(
    job_name: str, run_config: Mapping, tags: Mapping[str, str], organizations
) -> dict[str, str]:
    """The organization's tags a `sync_documents` run lacks (one launched from the launchpad):
    `sync_pipeline/organization` from its config, and its name, id and Metakocka company when
    `organizations` (the configured `Organization`s) knows it. Empty for any other run."""
    if job_name != JOB_NAME:
        return {}
    config = ((run_config.get("ops") or {}).get(OP_NAME) or {}).get("config") or {}
    organization_id = config.get("organization_id")
    if not isinstance(organization_id, str) or not organization_id:
        return {}
    wanted = {TAG_ORGANIZATION: organization_id}
    for organization in organizations:
        if organization.id == organization_id:
            wanted.update(organization_run_tags(organization))
    return {key: value for key, value in wanted.items() if key not in tags}
