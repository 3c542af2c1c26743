import type { IndexProgress } from "../history/memory/memory.repository.ts";
import { MAX_BACKLOG } from "./rate-limit.ts";

/** What the bot says in its own voice (never the twin's): honest about being an AI. */
export const texts = {
  description: (owner: string) =>
    `This is an AI twin of ${owner}: a language model trained on ${owner}'s own Telegram messages. ` +
    `It is not ${owner} typing. Only people ${owner} allowed can talk to it; /optout stops it from ever imitating you.`,
  shortDescription: (owner: string) => `AI twin of ${owner} — a model, not ${owner} in person.`,
  name: (owner: string) => `${owner} (AI twin)`.slice(0, 64),
  intro: (owner: string) =>
    `Hi! You are talking to an AI twin of ${owner}: replies come from a model trained on ${owner}'s messages, not from ${owner}. ` +
    `${owner} can read this conversation. /optout if you do not want to be imitated in ${owner}'s simulated chats. ` +
    `/guess: tell ${owner}'s real replies from the twin's.`,
  refusal: (owner: string) =>
    `This is a private AI twin of ${owner}; only people ${owner} allowed can talk to it.`,
  /** What friends can do, in one line: their /help, and the answer to a command the bot does not know. */
  friendHelp: (owner: string) =>
    `Just write: ${owner}'s AI twin answers as ${owner} would. /guess: tell ${owner}'s real replies from the twin's. /optout: never be imitated (/optin undoes it).`,
  rateLimited: "You are writing faster than I can answer — I will get to every message, give me a minute.",
  backlogFull: `I have ${MAX_BACKLOG} of your messages still to answer, so I will not answer the ones you send now; they are kept. Write again once I have caught up.`,
  /** A button press nothing took: stale, unknown, or not this person's to press. */
  pressNotValid: "That button is no longer valid.",
  away: (owner: string) => `${owner}'s twin is paused for now. Your messages are kept; write again later.`,
  failed: "Sorry — something went wrong on my side. Please try again in a moment.",
  optedOut:
    "Done: you will not be imitated in simulated chats, and new training sets will not learn your messages. /optin undoes it.",
  optedIn: "Done: you may be simulated again. /optout stops it at any time.",
  /** /status: how far the memory index (what the twin recalls past chats from) has come. */
  memoryIndex: ({ indexed, total, refusal }: IndexProgress) =>
    refusal
      ? `Memory: off — ${refusal}`
      : indexed >= total
        ? `Memory: every message indexed (${total.toLocaleString("en-US")})`
        : `Memory: ${indexed.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} messages indexed (${Math.floor((100 * indexed) / total)}%)`,
};
