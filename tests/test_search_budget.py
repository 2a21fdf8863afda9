"""The budget is a budget: a search trains exactly ``search.budget`` rules when it runs out of it (the
batch that reaches it cut after the sample that does), the controller learns from the rows kept, the
summary says what the store holds, and a resume after the cut changes nothing."""

from __future__ import annotations

import pytest
import torch

from search.driver import run_search
from search.store import RunStore
from tests.search_helpers import DUPLICATE_VOCABULARY, SMALL_VOCABULARY, tiny_config

torch.set_num_threads(1)

NO_BASELINES = {"confirm": {"top_k": 0, "baselines": []}}  # nothing trained before or after the search
CASES = [  # (batch_size, controller, vocabulary, max_batches_ahead)
    (3, "ppo", SMALL_VOCABULARY, 1),
    (4, "random", SMALL_VOCABULARY, 0),
    (8, "random", DUPLICATE_VOCABULARY, 1),  # duplicates within a batch: rows that wait cost nothing
]


@pytest.mark.parametrize(("batch_size", "kind", "vocabulary", "ahead"), CASES,
                         ids=[f"{k}-batch{b}-ahead{a}" for b, k, _, a in CASES])
def test_a_search_trains_exactly_its_budget(ray_session, tmp_path, batch_size, kind, vocabulary,
                                            ahead) -> None:
    config = {**tiny_config(budget=6, batch_size=batch_size, kind=kind, vocabulary=vocabulary,
                            max_batches_ahead=ahead), **NO_BASELINES}
    summary = run_search(config, tmp_path, progress=False)
    with RunStore(tmp_path, create=False) as store:
        rows = store.evaluations()
        updates = store.updates()
        trained_by_batch = store.trained_by_batch()
    trained = [r for r in rows if r.attempts > 0]
    assert len(trained) == 6 == summary.trained == sum(trained_by_batch.values()), [r.status for r in rows]
    assert summary.stopped == "budget" and summary.budget == 6
    assert len({r.canonical_key for r in trained}) == 6, "one training per rule"
    # The last batch ends with the training that reached the budget; earlier ones are whole.
    last = max(r.batch for r in rows)
    assert rows[-1].batch == last and rows[-1].attempts == 1
    assert all(sum(r.batch == b for r in rows) == batch_size for b in range(last))
    # Every stored row was learned from, in its batch's update: the cut batch's update took the rows kept.
    assert [u["batch"] for u in updates] == list(range(last + 1))
    assert [u["samples"] for u in updates] == [sum(r.batch == b for r in rows) for b in range(last + 1)]
    assert all(r.status != "pending" for r in rows)


def test_a_resume_after_the_cut_trains_nothing_more(ray_session, tmp_path) -> None:
    config = {**tiny_config(budget=5, batch_size=4, kind="ppo"), **NO_BASELINES}
    first = run_search(config, tmp_path, progress=False)
    again = run_search(None, tmp_path, resume=True, progress=False)
    assert first.trained == again.trained == 5 and again.evaluations == 0 and again.stopped == "budget"
    with RunStore(tmp_path, create=False) as store:
        assert sum(r.attempts for r in store.evaluations()) == 5
