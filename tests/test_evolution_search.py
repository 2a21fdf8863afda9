"""Evolution in the real search loop: the driver, the results store and an exact resume, as for PPO.

A search that dies right after recording an update and before checkpointing it resumes into the run that
was never interrupted (tests/test_search_faults.py does the same for PPO). With a population smaller
than a batch, every batch after the first is bred from the rewards the store handed back (invalid
rules at ``invalid_reward``, duplicates at their stored reward), so equal runs mean equal handling.
"""

from __future__ import annotations

import logging

import pytest

from controller import Evolution, make_searcher
from search.config import SearchConfig
from search.driver import CHECKPOINT, run_search
from search.store import RunStore
from tests.search_helpers import tiny_config
from tests.test_search_faults import _Crash, _same_run

pytestmark = pytest.mark.slow


def test_an_evolution_search_that_dies_before_its_checkpoint_resumes_exactly(ray_session, tmp_path,
                                                                            monkeypatch, caplog) -> None:
    config = tiny_config(budget=16, batch_size=6, kind="evolution")
    config["controller"]["evolution"] = {"population": 4, "tournament": 2}
    config["confirm"] = {"top_k": 0}  # the search alone
    reference = run_search(config, tmp_path / "reference", progress=False)
    assert reference.updates > 4, "long enough to crash in the middle"
    save = Evolution.save

    def dying_save(self, path):
        if self.updates == 3:
            raise _Crash
        save(self, path)

    monkeypatch.setattr(Evolution, "save", dying_save)
    with pytest.raises(_Crash):
        run_search(config, tmp_path / "run", progress=False)
    monkeypatch.undo()
    controller = make_searcher(SearchConfig.from_mapping(config).controller)
    controller.load(tmp_path / "run" / CHECKPOINT)
    assert controller.updates == 2 and len(controller.population) == 4

    with caplog.at_level(logging.WARNING, logger="search.driver"):
        summary = run_search(None, tmp_path / "run", resume=True, progress=False)
    assert not [r for r in caplog.records if "drawn again differs" in r.message]
    with RunStore(tmp_path / "run", create=False) as run, RunStore(tmp_path / "reference",
                                                                    create=False) as ref:
        _same_run(run.evaluations(), ref.evaluations())
        assert run.updates() == ref.updates()
        assert {r.status for r in ref.evaluations()} >= {"ok", "invalid"}
    assert (summary.updates, summary.trained, summary.best_rule) == (reference.updates, reference.trained,
                                                                     reference.best_rule)
