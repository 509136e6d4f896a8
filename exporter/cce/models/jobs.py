"""CCE jobs (``GET .../jobs/{id}``) and the job ID in an operation's answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from exporter.cce.models.fields import (
    CaseInsensitive,
    ExtendParam,
    Resource,
    Str,
    _nested,
    _objects,
)
from exporter.cce.models.known import JOB_TERMINAL_PHASES


class JobSpec(CaseInsensitive):
    type: Str = None
    cluster_uid: Str = Field(None, alias="clusterUID")
    resource_id: Str = Field(None, alias="resourceID")
    resource_name: Str = Field(None, alias="resourceName")
    extend_param: ExtendParam = Field(None, alias="extendParam")
    sub_jobs: Annotated[list[Job], _objects()] = Field(default_factory=list, alias="subJobs")


class JobStatus(CaseInsensitive):
    phase: Str = None
    reason: Str = None


class Job(Resource):
    spec: Annotated[JobSpec, _nested(JobSpec)] = Field(default_factory=JobSpec)
    status: Annotated[JobStatus, _nested(JobStatus)] = Field(default_factory=JobStatus)

    @property
    def phase(self) -> str | None:
        return self.status.phase

    @property
    def finished(self) -> bool:
        return self.status.phase in JOB_TERMINAL_PHASES

    @property
    def failed_sub_jobs(self) -> list[Job]:
        return [j for j in self.spec.sub_jobs if j.status.phase == "Failed"]


def extract_job_id(data: object) -> str | None:
    """A job ID in a decoded response: ``jobID``/``jobId``/``jobid``, top level or in ``status``."""
    if not isinstance(data, dict):
        return None
    for container in (data, data.get("status")):
        if isinstance(container, dict):
            for key, value in container.items():
                if isinstance(key, str) and key.lower() == "jobid" and isinstance(value, str):
                    return value or None
    return None


JobSpec.model_rebuild()
