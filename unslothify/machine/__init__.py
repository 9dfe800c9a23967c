"""The machine: its device and memory (device), what fits a GPU (fit, notebook 00), and setting up a hosted
runtime before anything else is installed (runtime: the standard library only)."""
