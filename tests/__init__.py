"""Tests of the rule language, the optimizer and the search."""
