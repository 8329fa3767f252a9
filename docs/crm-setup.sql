-- sync_pipeline: what a Fresh AI CRM owner runs once, e.g. in Supabase's SQL editor.
--
-- Why: the CRM's published schema has no trigger on sales_documents or sales_document_items
-- (docs/crm.md), so updated_at moves only when the CRM's own code sets it: its status routes
-- and its line edits do not. Until this is installed the pipeline compares every document's
-- content on every run (no edit is missed, but every run reads the whole CRM). With it,
-- updated_at moves on every write of a document or of one of its lines, and runs read only
-- what changed. The indexes make the pipeline's keyset reads and look-ups cheap either way.
--
-- Works on both published schema variants (sm/60: sales_document_items.document_id;
-- sm/fixed/10: sales_document_items.sales_document_id). Safe to run again. Nothing here
-- changes a row; uninstall with the statements at the end.

-- 1. updated_at = now() on every insert and update of a document or a line.
CREATE OR REPLACE FUNCTION public.sync_pipeline_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS sync_pipeline_set_updated_at ON public.sales_documents;
CREATE TRIGGER sync_pipeline_set_updated_at
  BEFORE INSERT OR UPDATE ON public.sales_documents
  FOR EACH ROW EXECUTE FUNCTION public.sync_pipeline_set_updated_at();

DROP TRIGGER IF EXISTS sync_pipeline_set_updated_at ON public.sales_document_items;
CREATE TRIGGER sync_pipeline_set_updated_at
  BEFORE INSERT OR UPDATE ON public.sales_document_items
  FOR EACH ROW EXECUTE FUNCTION public.sync_pipeline_set_updated_at();

-- 2. A line inserted, updated or deleted touches its document (once per statement, however
--    many lines it wrote: PostgreSQL allows transition tables for one event per trigger).
DO $setup$
DECLARE
  parent text;
BEGIN
  SELECT column_name INTO parent
    FROM information_schema.columns
   WHERE table_schema = 'public' AND table_name = 'sales_document_items'
     AND column_name IN ('document_id', 'sales_document_id');
  IF parent IS NULL THEN
    RAISE EXCEPTION 'sales_document_items has neither document_id nor sales_document_id';
  END IF;

  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION public.sync_pipeline_touch_documents() RETURNS trigger
    LANGUAGE plpgsql AS $body$
    BEGIN
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE public.sales_documents SET updated_at = now()
         WHERE id IN (SELECT %1$I FROM sync_pipeline_new_lines);
      END IF;
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE public.sales_documents SET updated_at = now()
         WHERE id IN (SELECT %1$I FROM sync_pipeline_old_lines);
      END IF;
      RETURN NULL;
    END
    $body$;$fn$, parent);

  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS sync_pipeline_lines_by_document '
    'ON public.sales_document_items (%I, id)', parent);
END
$setup$;

DROP TRIGGER IF EXISTS sync_pipeline_touch_documents_insert ON public.sales_document_items;
CREATE TRIGGER sync_pipeline_touch_documents_insert
  AFTER INSERT ON public.sales_document_items
  REFERENCING NEW TABLE AS sync_pipeline_new_lines
  FOR EACH STATEMENT EXECUTE FUNCTION public.sync_pipeline_touch_documents();

DROP TRIGGER IF EXISTS sync_pipeline_touch_documents_update ON public.sales_document_items;
CREATE TRIGGER sync_pipeline_touch_documents_update
  AFTER UPDATE ON public.sales_document_items
  REFERENCING NEW TABLE AS sync_pipeline_new_lines OLD TABLE AS sync_pipeline_old_lines
  FOR EACH STATEMENT EXECUTE FUNCTION public.sync_pipeline_touch_documents();

DROP TRIGGER IF EXISTS sync_pipeline_touch_documents_delete ON public.sales_document_items;
CREATE TRIGGER sync_pipeline_touch_documents_delete
  AFTER DELETE ON public.sales_document_items
  REFERENCING OLD TABLE AS sync_pipeline_old_lines
  FOR EACH STATEMENT EXECUTE FUNCTION public.sync_pipeline_touch_documents();

-- 3. Indexes for the pipeline's reads: documents by organization (or, where organization_id
--    is NULL, by owner) in (updated_at, id) order; mappings and products by the keys it looks
--    up.
CREATE INDEX IF NOT EXISTS sync_pipeline_documents_by_organization
  ON public.sales_documents (organization_id, updated_at, id);
CREATE INDEX IF NOT EXISTS sync_pipeline_documents_by_owner
  ON public.sales_documents (user_id, updated_at, id) WHERE organization_id IS NULL;
CREATE INDEX IF NOT EXISTS sync_pipeline_contact_mappings_by_contact
  ON public.metakocka_contact_mappings (contact_id);
CREATE INDEX IF NOT EXISTS sync_pipeline_contact_mappings_by_partner
  ON public.metakocka_contact_mappings (metakocka_id);
CREATE INDEX IF NOT EXISTS sync_pipeline_product_mappings_by_code
  ON public.metakocka_product_mappings (metakocka_code);
CREATE INDEX IF NOT EXISTS sync_pipeline_products_by_sku ON public.products (sku);

-- 4. How the pipeline learns that this is installed (POST /rest/v1/rpc/sync_pipeline_crm_setup).
--    It reads the triggers from the catalog, so a trigger disabled or dropped later shows.
CREATE OR REPLACE FUNCTION public.sync_pipeline_crm_setup() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'version', 1,
    'updated_at_trigger', EXISTS (
      SELECT 1 FROM pg_trigger
       WHERE tgrelid = 'public.sales_documents'::regclass
         AND tgname = 'sync_pipeline_set_updated_at' AND tgenabled <> 'D'),
    'line_trigger', (
      SELECT count(*) = 3 FROM pg_trigger
       WHERE tgrelid = 'public.sales_document_items'::regclass
         AND tgname LIKE 'sync\_pipeline\_touch\_documents\_%' AND tgenabled <> 'D'))
$$;

DO $grant$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN  -- Supabase's role
    GRANT EXECUTE ON FUNCTION public.sync_pipeline_crm_setup() TO service_role;
  END IF;
END
$grant$;

NOTIFY pgrst, 'reload schema';  -- PostgREST sees the new function without a restart

-- To uninstall:
--   DROP TRIGGER sync_pipeline_set_updated_at ON public.sales_documents;
--   DROP TRIGGER sync_pipeline_set_updated_at ON public.sales_document_items;
--   DROP TRIGGER sync_pipeline_touch_documents_insert ON public.sales_document_items;
--   DROP TRIGGER sync_pipeline_touch_documents_update ON public.sales_document_items;
--   DROP TRIGGER sync_pipeline_touch_documents_delete ON public.sales_document_items;
--   DROP FUNCTION public.sync_pipeline_crm_setup(), public.sync_pipeline_touch_documents(),
--                 public.sync_pipeline_set_updated_at();
