"""Job ids: made by the server, and nothing else passes for one."""

from __future__ import annotations

from kilo_bridge.jobs.record import new_job_id, valid_job_id


def test_job_ids() -> None:
    job_id = new_job_id()
    assert valid_job_id(job_id) and job_id != new_job_id()
    assert not valid_job_id(job_id.upper()) and not valid_job_id(job_id + "0") and not valid_job_id("job_")
