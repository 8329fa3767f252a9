"""Use cases that move documents: extract, validate, push and record (the OCA
importers/exporters)."""
