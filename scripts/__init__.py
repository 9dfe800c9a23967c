"""Measurements and upkeep around the package, each runnable from the project folder as `python -m scripts.<name>`
(the figures in docs/ come from these; none of them is part of what a user installs)."""
