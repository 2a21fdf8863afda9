"""The verdict cases that tests/test_winners.py (a verdict computed) and tests/test_discovered_rules.py (an
old record, written before the t-test with ``beats: true``, read back) share: the rule's rewards per
seed, the baselines' on the same seeds, and the expected best baseline and outcome."""

from __future__ import annotations

ADAM5 = [0.85, 0.86, 0.84, 0.87, 0.85]

# name: (rule rewards, baselines, (best baseline, outcome))
VERDICT_CASES: dict[str, tuple[list[float], dict[str, list[float]], tuple[str, str]]] = {
    "one seed": ([0.9], {"adam": [0.5]}, ("adam", "not enough seeds")),
    "two seeds, a huge gain": ([0.9, 0.8], {"adam": [0.1, 0.12], "sgd": [0.05, 0.04]},
                               ("adam", "not enough seeds")),
    "four seeds, a clear win": ([0.91, 0.93, 0.9, 0.94], {"adam": ADAM5[:4]}, ("adam", "not enough seeds")),
    "five seeds, a clear win": ([0.91, 0.93, 0.9, 0.94, 0.92], {"adam": ADAM5, "sgd": [0.5] * 5},
                                ("adam", "beats")),
    "five seeds, the same gain on each": ([1.0, 0.75, 1.25, 1.0, 0.75],
                                          {"adam": [0.5, 0.25, 0.75, 0.5, 0.25]}, ("adam", "beats")),
    "five seeds, noisy": ([0.95, 0.80, 0.92, 0.83, 0.90], {"adam": ADAM5}, ("adam", "does not beat")),
    "five seeds, a loss": ([0.80, 0.83, 0.79, 0.84, 0.81], {"adam": ADAM5}, ("adam", "does not beat")),
    "five seeds, sgd the best baseline": ([0.91, 0.93, 0.9, 0.94, 0.92],
                                          {"adam": ADAM5, "sgd": [0.92, 0.91, 0.93, 0.9, 0.92]},
                                          ("sgd", "does not beat")),
}
