"""Everything the pipeline knows about Fresh AI CRM (Supabase: PostgREST), in one package.

- `client`: the PostgREST client; `documents`, `directory`, `mirror`: reads and writes under
  PostgREST's limits; `query`: filter and URL-length helpers; `tenancy`: the organization filter.
- `profiles`: the CRM's published schema profiles.
- `credentials`: the Metakocka credentials the CRM keeps.
- `mapping`: CRM rows <-> the canonical `SalesDocument`.
"""
