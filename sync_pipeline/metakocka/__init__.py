"""Everything the pipeline knows about Metakocka, in one package.

- `client`: the JSON-over-POST client (auth in the body, error codes, paging, duplicate avoidance).
- `wire`: the wire format (Slovenian decimals, dates, booleans as strings).
- `mapping`: Metakocka JSON <-> the canonical `SalesDocument`, and the document-type vocabulary.
- `amounts`: Metakocka's own sums and gross lines; `statuses`: its status labels.
"""
