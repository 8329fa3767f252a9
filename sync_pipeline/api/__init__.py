"""The seed's HTTP endpoints (FastAPI), writing on-demand sync requests to the queue."""
