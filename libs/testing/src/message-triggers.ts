import { withPgClient } from './database.js';

/**
 * Makes every insert into `messages` take at least `ms` longer (a statement trigger sleeping),
 * so that batches stay in flight long enough for a test to act while one is.
 */
export async function slowInserts(databaseUrl: string, ms: number): Promise<void> {
  await withPgClient(databaseUrl, async (db) => {
    await db.query(`create or replace function slow_insert() returns trigger language plpgsql as $$
      begin perform pg_sleep(${ms / 1000}); return null; end $$`);
    await db.query('create trigger slow_insert after insert on messages for each statement execute function slow_insert()');
  });
}

/** Undoes `slowInserts`: inserts into `messages` take their own time again. */
export async function removeSlowInserts(databaseUrl: string): Promise<void> {
  await withPgClient(databaseUrl, async (db) => {
    await db.query('drop trigger slow_insert on messages');
    await db.query('drop function slow_insert()');
  });
}

/**
 * Makes PostgreSQL refuse every message whose content is `POISON` (a row trigger raising an
 * exception), as it would a message it can never store: the batch it comes in fails.
 */
export async function refusePoison(databaseUrl: string): Promise<void> {
  await withPgClient(databaseUrl, async (db) => {
    await db.query(`create function refuse_poison() returns trigger language plpgsql as $$
      begin
        if new.content = 'POISON' then raise exception 'poison message refused by a trigger'; end if;
        return new;
      end $$`);
    await db.query('create trigger refuse_poison before insert on messages for each row execute function refuse_poison()');
  });
}
