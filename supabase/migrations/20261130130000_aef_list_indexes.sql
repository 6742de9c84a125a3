-- Keyset indexes for GET /api/aef/documents and GET /api/aef/executions: a user's rows (or a
-- document's executions) newest first, with the id breaking ties in created_at, so a page is
-- one index range after the cursor's (created_at, id). They supersede the two-column indexes
-- of the first migration (same leading columns), which are dropped.
create index if not exists aef_documents_user_keyset_idx
  on public.aef_documents (user_id, created_at desc, id desc);
drop index if exists public.aef_documents_user_idx;

create index if not exists aef_executions_user_keyset_idx
  on public.aef_executions (user_id, created_at desc, id desc);
drop index if exists public.aef_executions_user_idx;

create index if not exists aef_executions_document_keyset_idx
  on public.aef_executions (document_id, created_at desc, id desc);
drop index if exists public.aef_executions_document_idx;
