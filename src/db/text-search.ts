import type pg from "pg";

export type TextSearchCheck = (
  | { ok: true }
  | {
      ok: false;
      /** What is wrong with the server and how to fix it, for the owner. */
      reason: string;
    }
) & {
  /** Whether the server offers pg_trgm (similarity() for misspelled names), whatever `ok` says. */
  trigram: boolean;
};

/**
 * Whether full-text search can read Russian on this server. On a SQL_ASCII database, or under
 * the C character type without a UTF-8 locale, PostgreSQL takes Cyrillic letters for punctuation:
 * `to_tsvector('russian', …)` comes back empty and every search silently finds nothing. Memory
 * refuses to start with `reason` rather than remember what it could never find again.
 * `embedded` is the embedded cluster's folder when the server is twin's own; the fix differs.
 */
export async function checkTextSearch(
  pool: pg.Pool,
  options: { embedded?: string } = {},
): Promise<TextSearchCheck> {
  const { rows } = await pool.query<{ encoding: string; db: DatabaseRow; stems: boolean; trigram: boolean }>(
    `SELECT current_setting('server_encoding') AS encoding,
            to_jsonb(d) AS db, -- every column, whichever the version has (datlocale is PG 17+)
            to_tsvector('russian', 'друзей') @@ to_tsquery('russian', 'друзья') AS stems,
            EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') AS trigram
       FROM pg_database d WHERE datname = current_database()`,
  );
  const { encoding, db, stems, trigram } = rows[0] as (typeof rows)[number];
  const refuse = (problem: string) => ({
    ok: false as const,
    reason: `${problem} ${fix(db.datname, options)}`,
    trigram,
  });
  if (encoding === "SQL_ASCII")
    return refuse(`The database ${db.datname} is SQL_ASCII, on which text search cannot read Russian words.`);
  const builtinUtf8 = db.datlocprovider === "b" && /^(C\.UTF-?8|PG_UNICODE_FAST)$/i.test(db.datlocale ?? "");
  if (/^(C|POSIX)$/i.test(db.datctype) && !builtinUtf8)
    return refuse(
      `The database ${db.datname} has the character type ${db.datctype}, under which text search cannot read Russian words.`,
    );
  if (!stems)
    return refuse(
      `Russian text search does not work on the database ${db.datname} ('друзей' does not find 'друзья').`,
    );
  return { ok: true, trigram };
}

type DatabaseRow = { datname: string; datctype: string; datlocprovider?: string; datlocale?: string | null };

function fix(database: string, options: { embedded?: string }): string {
  return options.embedded
    ? `Stop twin, move the folder ${options.embedded} aside, and import your export again (twin import <export>): ` +
        "twin then creates a new UTF-8 cluster. Or set DATABASE_URL to a UTF-8 server."
    : `Create the database as UTF-8 (CREATE DATABASE ${database} TEMPLATE template0 ENCODING 'UTF8' ` +
        "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'), point DATABASE_URL at it, and import your export again.";
}
