/**
 * A count with its noun in the right number: `plural(1, "chat")` is "1 chat", `plural(3, "chat")`
 * "3 chats", `plural(2, "person", { many: "people" })` "2 people"; `grouped` writes the count with
 * thousands separators ("15,789 sessions"). Counts in messages go through here.
 */
export function plural(
  count: number,
  singular: string,
  options: { many?: string; grouped?: boolean } = {},
): string {
  const shown = options.grouped ? count.toLocaleString("en-US") : String(count);
  return `${shown} ${count === 1 ? singular : (options.many ?? `${singular}s`)}`;
}
