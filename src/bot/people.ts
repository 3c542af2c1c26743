import { InlineKeyboard } from "grammy";
import { sanitizeName } from "../dataset/names.ts";
import { SESSION_GAP_MINUTES } from "../dataset/sessions.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import { type PersonCandidate, parsePersonQuery } from "../history/person-lookup.ts";
import type { BotContext } from "./context.ts";

const PICKER_SIZE = 8;

export type PickedPerson = { id: number; name: string };

/** A person's name as the bot shows it (and as prompts name them). */
export async function displayName(
  history: HistoryRepository,
  id: number,
  fallback?: string,
): Promise<string> {
  return sanitizeName((await history.personName(id)) ?? fallback, id);
}

/** Whether anything was imported at all: what "/import your history first" depends on. */
export async function hasHistory(history: HistoryRepository): Promise<boolean> {
  return (await history.stats({ top: 0, gapMinutes: SESSION_GAP_MINUTES })).messages > 0;
}

/**
 * A picker: one button a row, `[label, callback data]` each. Undefined when there is nobody to
 * offer, so no empty keyboard (nor an empty row) is ever sent.
 */
export function pickerKeyboard(buttons: [label: string, data: string][]): InlineKeyboard | undefined {
  if (buttons.length === 0) return undefined;
  return InlineKeyboard.from(buttons.map(([text, data]) => [InlineKeyboard.text(text, data)]));
}

const label = (person: PersonCandidate) =>
  `${sanitizeName(person.name, person.id)} · ${person.messages} msg${person.lastMessageAt ? ` · ${person.lastMessageAt.toISOString().slice(0, 10)}` : ""}`;

/**
 * The person the owner named in a command (`/allow Dr_Willis`, `/talk 12345`), by the one lookup
 * rule (history/person-lookup.ts). When the name is not unique, or not exact, the bot answers
 * with a picker whose buttons carry `${action}:<id>` and this returns undefined; likewise when
 * nobody matches.
 */
export async function pickPerson(
  ctx: BotContext,
  history: HistoryRepository,
  text: string,
  action: string,
): Promise<PickedPerson | undefined> {
  const query = parsePersonQuery(text);
  if (!query) return undefined;
  const lookup = await history.lookupPerson(query);
  if (lookup.found) return { id: lookup.found.id, name: sanitizeName(lookup.found.name, lookup.found.id) };
  if (lookup.candidates.length === 0) {
    await ctx.reply(`Nobody called “${text.trim()}” in your history.`);
    return undefined;
  }
  const keyboard = pickerKeyboard(
    lookup.candidates.slice(0, PICKER_SIZE).map((person) => [label(person), `${action}:${person.id}`]),
  );
  await ctx.reply(`Several people match “${text.trim()}”. Which one?`, { reply_markup: keyboard });
  return undefined;
}
