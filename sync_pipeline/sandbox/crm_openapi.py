"""The OpenAPI (Swagger 2.0) description PostgREST serves at its root (Supabase: ``/rest/v1/``).

Why: a client learns which schema a CRM has from this document (the columns of each table),
as the pipeline does at start-up. Its shape follows PostgREST's ``Response/OpenAPI.hs``
(``makeTableDef``, ``makeProperty``, ``makeProcPathItem``):
- ``definitions.<table>``: ``{type: object, properties, required}``; ``required`` lists every
  NOT NULL column, with or without a default;
- a property: ``format`` is the PostgreSQL type name, ``type`` its Swagger type (no ``type`` for
  json/jsonb), ``maxLength`` for ``character varying(n)``, a literal ``default`` without its
  cast, and the notes ``Note:\\nThis is a Primary Key.<pk/>`` /
  ``Note:\\nThis is a Foreign Key to `t.c`.<fk table='t' column='c'/>`` in ``description``;
- ``paths``: ``/`` itself, ``/<table>`` per table, ``/rpc/<function>`` per function.
"""

from __future__ import annotations

from typing import Any

from sync_pipeline.sandbox.crm_ddl import Column, Table
from sync_pipeline.sandbox.crm_store import SETUP_FUNCTION, CrmState

POSTGREST_VERSION = "12.2.3"
SWAGGER_TYPES = {
    "text": "string",
    "character varying": "string",
    "boolean": "boolean",
    "integer": "integer",
    "numeric": "number",
    "jsonb": None,
    "text[]": "array",
}


def openapi_document(state: CrmState, host: str) -> dict[str, Any]:
    tables = [t for t in state.specs.values() if t.schema == "public"]
    paths: dict[str, Any] = {
        "/": {"get": {"summary": "OpenAPI description (this document)", "tags": ["Introspection"]}}
    }
    for table in tables:
        ref = {"$ref": f"#/definitions/{table.name}"}
        ok = {"description": "OK", "schema": {"type": "array", "items": ref}}
        paths[f"/{table.name}"] = {
            "get": {
                "tags": [table.name],
                "responses": {"200": ok, "206": {"description": "Partial Content"}},
            },
            "post": {"tags": [table.name], "responses": {"201": {"description": "Created"}}},
            "patch": {"tags": [table.name], "responses": {"204": {"description": "No Content"}}},
            "delete": {"tags": [table.name], "responses": {"204": {"description": "No Content"}}},
        }
    if state.setup_installed:
        paths[f"/rpc/{SETUP_FUNCTION}"] = {
            "post": {
                "tags": [f"(rpc) {SETUP_FUNCTION}"],
                "parameters": [
                    {"in": "body", "name": "args", "required": True, "schema": {"type": "object"}}
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "swagger": "2.0",
        "info": {"title": "standard public schema", "version": POSTGREST_VERSION},
        "host": host,
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "produces": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": {t.name: table_definition(t) for t in tables},
    }


def table_definition(table: Table) -> dict[str, Any]:
    primary = set(table.primary_key.columns)
    references = {fk.column: fk for fk in table.foreign_keys if fk.schema == "public"}
    properties = {}
    for col in table.columns:
        notes = []
        if col.name in primary:
            notes.append("This is a Primary Key.<pk/>")
        fk = references.get(col.name)
        if fk is not None:
            notes.append(
                f"This is a Foreign Key to `{fk.table}.{fk.target}`."
                f"<fk table='{fk.table}' column='{fk.target}'/>"
            )
        properties[col.name] = _property(col, notes)
    return {
        "type": "object",
        "required": [c.name for c in table.columns if not c.nullable],
        "properties": properties,
    }


def _property(col: Column, notes: list[str]) -> dict[str, Any]:
    prop: dict[str, Any] = {"format": col.type}
    swagger = SWAGGER_TYPES.get(col.type, "string")
    if swagger is not None:
        prop["type"] = swagger
    if col.type == "text[]":
        prop["items"] = {"type": "string"}
    if col.length is not None:
        prop["maxLength"] = col.length
    default = _literal_default(col)
    if default is not None:
        prop["default"] = default
    if notes:
        prop["description"] = "Note:\n" + "\n".join(notes)
    return prop


def _literal_default(col: Column) -> Any:
    """The default as PostgREST shows it: string literals without their cast, numbers and
    booleans as JSON values, function calls as their text."""
    expr = col.default
    if expr is None:
        return None
    if expr.startswith("'"):
        return expr[1 : expr.rindex("'")]
    if expr in ("true", "false"):
        return expr == "true"
    try:
        return int(expr)
    except ValueError:
        return expr
