"""What follows a search: its winners confirmed and exported (winners), a rule compared with the baselines
on another task (transfer) or on the held-out panel of tasks (panel), the baselines of a run at its own
budget (baselines), all compared on the search's Ray workers (comparison). Built on the engine
(search.*); the command line (search.cli) shows them. Imports nothing of the driver or the command line
(tests/test_structure.py)."""
