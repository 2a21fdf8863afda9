"""The search: Ray workers evaluate the controller's candidates on child tasks, results go to a durable
store, and the `nos` command line drives it all. The one package that brings the others together.

Three jobs, in layers that import downwards only (tests/test_structure.py):

- the engine, here: run configs (config), the results store (store), one process per run (lock), Ray
  (cluster), the evaluation workers (workers), the one scheduling loop over them (scheduling), the
  search's queue of trainings (trainings), progress bars (progress) and wandb tracking (tracking);
- what follows a search, in `search.results`: confirmation and export of the winners, transfer to other
  tasks, a run's baselines, all compared on the engine's workers (comparison);
- `search.driver`, which runs a search and then confirms its winners;
- the `nos` command line, in `search.cli`: the commands, rule tables, one rule in detail, plots, and
  the HTML report (`nos report`).
"""
