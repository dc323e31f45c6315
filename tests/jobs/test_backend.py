"""jobs/backend.py: where the state lives, and finding a job by the id prefix a user types."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from ample_batch.errors import InputError
from ample_batch.jobs.backend import State, find_job, open_store


def test_a_job_is_found_by_any_prefix_of_its_id_and_an_ambiguous_one_names_the_jobs(
    tmp_path: Path,
) -> None:
    with open_store(State(tmp_path)) as store:
        # 17 jobs: two of them share their first hex digit, whatever the ids are.
        jobs = [
            store.open_job(
                input_path=f"/data/leads-{n}.csv", fingerprint="f", email_column="Email",
                output_path=None, cache_ttl=0,
            )
            for n in range(17)
        ]  # fmt: skip
        firsts = collections.Counter(job.id[0] for job in jobs)
        shared, _ = firsts.most_common(1)[0]
        twins = sorted(job.id for job in jobs if job.id[0] == shared)
        assert find_job(store, jobs[3].id).id == jobs[3].id
        assert find_job(store, jobs[3].id[:12].upper()).id == jobs[3].id
        with pytest.raises(
            InputError, match=rf"^job '{shared}' is more than one job \({twins[0]}, "
        ):
            find_job(store, shared)
        with pytest.raises(InputError, match=r"^no job 'zz': see `ample-batch status`"):
            find_job(store, "zz")
