import { SYSTEM_ROLE } from "./chatml.ts";

/**
 * The display-name table (pure): every person gets one role name per dataset, the same wherever
 * they speak. Names are sanitised (no control strings, no newlines, never empty or "system") and
 * made unique: two people called "Alex" become "Alex" and "Alex (2)" — the owner first, then the
 * more active person keeps the plain name (ties by id).
 */
export type NameTable = ReadonlyMap<number, string>;

export function sanitizeName(name: string | null | undefined, id: number): string {
  const cleaned = (name ?? "")
    .replace(/<\||\|>/g, "")
    .replace(/[\r\n\t]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  if (!cleaned) return `User ${id}`;
  if (cleaned.toLowerCase() === SYSTEM_ROLE) return `${cleaned} (${id})`;
  return cleaned;
}

export function buildNameTable(
  people: Iterable<{ id: number; name: string | null; messages?: number }>,
  overrides: ReadonlyMap<number, string> = new Map(),
  ownerId?: number,
): NameTable {
  const rank = (p: { id: number; messages?: number }) =>
    p.id === ownerId ? Number.POSITIVE_INFINITY : (p.messages ?? 0);
  const sorted = [...people].sort((a, b) => rank(b) - rank(a) || a.id - b.id);
  const table = new Map<number, string>();
  const taken = new Set<string>();
  // Overrides claim their names first: the owner asked for exactly these.
  for (const person of sorted) {
    const override = overrides.get(person.id);
    if (override === undefined) continue;
    const name = sanitizeName(override, person.id);
    table.set(person.id, name);
    taken.add(name);
  }
  for (const person of sorted) {
    if (table.has(person.id)) continue;
    const base = sanitizeName(person.name, person.id);
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base} (${n})`;
    table.set(person.id, name);
    taken.add(name);
  }
  return table;
}
