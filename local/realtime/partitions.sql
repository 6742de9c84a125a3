-- realtime.messages partitions, as Supabase Realtime's create_messages_partitions makes them
-- (supabase/realtime lib/realtime/tenants.ex): one per day from yesterday to three days ahead,
-- owned by supabase_realtime_admin. Applied with the fixture (local/schema.py) and kept up by
-- the local Realtime server (local/realtime/hub.py), as the real server does.
do $$
declare
  d date;
  name text;
begin
  for d in select generate_series(current_date - 1, current_date + 3, interval '1 day')::date
  loop
    name := 'messages_' || to_char(d, 'YYYY_MM_DD');
    if to_regclass('realtime.' || name) is null then
      execute format('create table if not exists realtime.%I partition of realtime.messages '
                     'for values from (%L) to (%L)', name, d, d + 1);
      execute format('alter table realtime.%I owner to supabase_realtime_admin', name);
    end if;
  end loop;
end
$$;
