import type pg from "pg";
import { sanitizeName } from "../dataset/names.ts";

export type PersonChoice = { id: number; name: string; messages: number };

/** The owner's busiest personal chats, for the pickers of /allow and /talk. */
export async function topPartners(
  pool: pg.Pool,
  options: { limit: number; exclude?: number[] },
): Promise<PersonChoice[]> {
  const { rows } = await pool.query<{ id: string; name: string | null; messages: number }>(
    `SELECT m.chat_id AS id, p.name, count(*)::int AS messages
     FROM messages m JOIN chats c ON c.id = m.chat_id LEFT JOIN people p ON p.id = m.chat_id
     WHERE c.type = 'personal_chat' AND m.kind <> 'service' AND m.chat_id > 0
       AND m.chat_id <> coalesce((SELECT person_id FROM owner), 0) AND NOT (m.chat_id = ANY($2::bigint[]))
     GROUP BY m.chat_id, p.name ORDER BY messages DESC LIMIT $1`,
    [options.limit, options.exclude ?? []],
  );
  return rows.map((row) => ({
    id: Number(row.id),
    name: sanitizeName(row.name, Number(row.id)),
    messages: row.messages,
  }));
}

/** A person by user id or by name (exact, then the start of a name; case-insensitive), never the owner. */
export async function findPerson(pool: pg.Pool, query: string): Promise<PersonChoice | undefined> {
  const wanted = query.trim().replace(/^@/, "");
  if (!wanted) return undefined;
  const { rows } = await pool.query<{ id: string; name: string | null; messages: number }>(
    `SELECT p.id, p.name, (SELECT count(*) FROM messages m WHERE m.chat_id = p.id)::int AS messages
     FROM people p
     WHERE p.id > 0 AND p.id <> coalesce((SELECT person_id FROM owner), 0)
       AND (p.id::text = $1 OR lower(p.name) = lower($1) OR lower(p.name) LIKE lower($1) || '%')
     ORDER BY (p.id::text = $1) DESC, (lower(p.name) = lower($1)) DESC, messages DESC LIMIT 1`,
    [wanted],
  );
  const row = rows[0];
  return row
    ? { id: Number(row.id), name: sanitizeName(row.name, Number(row.id)), messages: row.messages }
    : undefined;
}

export async function personName(pool: pg.Pool, id: number, fallback?: string): Promise<string> {
  const { rows } = await pool.query<{ name: string | null }>("SELECT name FROM people WHERE id = $1", [id]);
  return sanitizeName(rows[0]?.name ?? fallback, id);
}
