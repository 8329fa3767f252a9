"""Extraction reads the next pages while it maps the current ones (`sync.extract.read_ahead`)."""

import pytest

from sync_pipeline.adapters.errors import TransientError
from sync_pipeline.sync.extract import read_ahead


def test_items_arrive_in_order_and_complete():
    assert list(read_ahead(iter(range(1234)), chunk=100, chunks=2)) == list(range(1234))
    assert list(read_ahead(iter([]))) == []


def test_a_failure_of_the_reader_is_raised_in_the_consumer():
    def pages():
        yield from range(150)
        raise TransientError("page 2 failed")

    seen = []
    with pytest.raises(TransientError, match="page 2 failed"):
        for item in read_ahead(pages(), chunk=100):
            seen.append(item)
    assert seen == list(range(100))  # what was read before the failure was delivered


def test_a_consumer_that_stops_early_releases_the_reader():
    consumed = []

    def endless():
        n = 0
        while True:
            consumed.append(n)
            yield n
            n += 1

    for item in read_ahead(endless(), chunk=10, chunks=2):
        if item == 5:
            break
    # the reader stops within a few chunks instead of running forever
    assert len(consumed) < 100
