"""The host orchestrator: plans the matrix, runs each cell in its framework's container, and
collects the results. (Built in the containerized-matrix issue; the `bench` package it drives
is complete on its own: `python -m bench run` runs one cell anywhere.)"""
