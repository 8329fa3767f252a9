"""Op-based jobs: on-demand syncs of named documents (the CRM's "Sync" buttons)."""
