"""Write configs/references.json: the reference values of the tasks the shipped run configs derive.

    python benchmarks/references.py                 # the quickstart's: its funnel's stages, its confirmation
    python benchmarks/references.py --check         # exit 1 when one is missing (what the test checks)

A normalised reward (`child_tasks.reward`) needs tuned Adam's loss on the very task it scores. The
quickstart's own tasks carry theirs in their configs; the tasks it derives (each funnel stage's, at its
budget scale and reward; the confirmation's at twice the epochs) would be measured at the start of a first
run, several minutes on one core before anything else happens. This script takes each from the local cache
(`~/.cache/nos/references`, which a run fills) or measures it, and writes them all, keyed by the task's
fingerprint, to configs/references.json, which `child_tasks.reward.with_reference` reads before measuring.
Run it again after changing a shipped config (tests/test_funnel.py fails until then).
"""

from __future__ import annotations

import argparse
import json
import sys

from child_tasks.config import NORMALISED
from child_tasks.reward import SHIPPED_REFERENCES, fingerprint, shipped_references, with_reference
from configuration.files import write_atomic
from search.config import load_search_config

RUN_CONFIGS = ("quickstart",)


def derived_tasks() -> list:
    """The normalised tasks the shipped run configs derive: each funnel stage's and the confirmation's."""
    tasks = []
    for name in RUN_CONFIGS:
        config = load_search_config(None if name == "quickstart" else name)
        suites = [*config.stages]
        if config.confirm.top_k:
            suites.append(config.suite.scaled(config.confirm.budget_scale))
        tasks += [t for suite in suites for t in suite.tasks if t.reward in NORMALISED]
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether every value is shipped")
    args = parser.parse_args()
    tasks = derived_tasks()
    shipped = shipped_references()
    missing = [t for t in tasks if fingerprint(t) not in shipped]
    if args.check:
        for task in missing:
            print(f"missing: {task.name or task.task} (fingerprint {fingerprint(task)})")
        sys.exit(1 if missing else 0)
    values = {fingerprint(t): with_reference(t, log_fn=print).reference for t in tasks}
    document = {key: ref.model_dump(mode="json") for key, ref in sorted(values.items())}
    write_atomic(json.dumps(document, indent=2) + "\n", SHIPPED_REFERENCES)
    print(f"{len(document)} reference values written to {SHIPPED_REFERENCES}")


if __name__ == "__main__":
    main()
