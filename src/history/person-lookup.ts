import { plural } from "../plural.ts";

/**
 * One rule for finding a person by what the owner typed (/allow, /revoke, /talk, /forget, /log,
 * `twin chat --with/--as`, `twin eval --speaker`), pure: a numeric id always resolves; a name
 * resolves only when exactly one person has exactly that name (case-sensitive). Anything else
 * gives the candidates, for a picker or a list, most active first.
 */

export type PersonCandidate = {
  id: number;
  name: string | null;
  /** Messages they sent, in personal chats and groups alike. */
  messages: number;
  lastMessageAt: Date | null;
};

export type PersonQuery = { id: number } | { name: string };

export type PersonLookup =
  | { found: PersonCandidate; candidates?: undefined }
  | { found?: undefined; candidates: PersonCandidate[] };

/** What the owner typed, as an id or a name; a leading @ is dropped; undefined when empty. */
export function parsePersonQuery(text: string): PersonQuery | undefined {
  const wanted = text.trim().replace(/^@/, "").trim();
  if (!wanted) return undefined;
  if (/^\d{1,15}$/.test(wanted)) return { id: Number(wanted) };
  return { name: wanted };
}

/** Decides among the people whose names match `name` loosely (any case, a part of the name). */
export function choosePerson(name: string, matches: PersonCandidate[]): PersonLookup {
  const exact = matches.filter((person) => person.name === name);
  if (exact.length === 1) return { found: exact[0] as PersonCandidate };
  const candidates = exact.length > 1 ? exact : matches;
  return { candidates: [...candidates].sort((a, b) => b.messages - a.messages) };
}

/** "Dr_Willis (10313586) · 696 messages · last 2008-06-05": one candidate on one line. */
export function describeCandidate(person: PersonCandidate): string {
  const last = person.lastMessageAt ? ` · last ${person.lastMessageAt.toISOString().slice(0, 10)}` : "";
  return `${person.name ?? "?"} (${person.id}) · ${plural(person.messages, "message")}${last}`;
}
