"""Command groups of the `sync-pipeline` CLI, one module each (registered in `cli.py`)."""
