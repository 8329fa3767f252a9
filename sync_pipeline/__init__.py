"""sync_pipeline: two-way sync of sales documents between Fresh AI CRM and Metakocka."""
