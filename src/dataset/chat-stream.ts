import {
  type ChatInfo,
  type ChatStats,
  chatSessions,
  type Example,
  type ExampleContext,
  evalCount,
  sessionExamples,
} from "./examples.ts";
import type { DatasetMessage, Session } from "./sessions.ts";

/**
 * A chat's examples built as its messages arrive, so that memory holds the messages of the
 * session in progress and the sessions whose split is still open, not the whole chat: a
 * five-year chat of 400,000 messages costs what a few thousand do (issue 32).
 *
 * The examples are exactly chatExamples' on the whole chat, in the same order. Messages are cut
 * into sessions where two are more than the gap apart (a cut buildSessions makes whatever it
 * filters). A chat's latest `evalCount(n)` sessions are held out; since `n - evalCount(n)` never
 * decreases as sessions come in, a session before that count of the sessions so far is training
 * for good, and only the ones after it wait for the chat's end.
 */
export class ChatExampleStream {
  /** Messages since the last cut: the session in progress. */
  private pending: DatasetMessage[] = [];
  /** Kept sessions whose split is not known yet, the oldest first. */
  private held: Session[] = [];
  private kept = 0;
  private readonly gapMs: number;

  constructor(
    private readonly chat: ChatInfo,
    private readonly context: ExampleContext,
    private readonly stats: ChatStats,
  ) {
    this.gapMs = context.settings.gapMinutes * 60_000;
  }

  /** More of the chat's messages, in time order; returns the examples whose split is now known. */
  push(messages: readonly DatasetMessage[]): Example[] {
    // The messages before these hold no gap (the last cut was at the last one): look at the new ones.
    const from = Math.max(1, this.pending.length);
    for (const message of messages) this.pending.push(message);
    const cut = lastGap(this.pending, this.gapMs, from);
    if (cut <= 0) return [];
    this.addSessions(this.pending.slice(0, cut));
    this.pending = this.pending.slice(cut);
    const firstHeld = this.kept - this.held.length;
    const training = Math.max(
      0,
      this.kept - evalCount(this.kept, this.context.settings.evalFraction) - firstHeld,
    );
    return this.render(this.held.splice(0, training).map((session) => [session, "train"] as const));
  }

  /** The chat has ended: the rest of its examples, its latest sessions held out. */
  end(): Example[] {
    this.addSessions(this.pending);
    this.pending = [];
    const heldOut = evalCount(this.kept, this.context.settings.evalFraction);
    const firstHeld = this.kept - this.held.length;
    const rest = this.held.map(
      (session, i) => [session, firstHeld + i >= this.kept - heldOut ? "eval" : "train"] as const,
    );
    this.held = [];
    return this.render(rest);
  }

  private addSessions(messages: DatasetMessage[]): void {
    if (messages.length === 0) return;
    const sessions = chatSessions(this.chat, messages, this.context, this.stats);
    for (const session of sessions) this.held.push(session);
    this.kept += sessions.length;
  }

  private render(sessions: (readonly [Session, Example["split"]])[]): Example[] {
    return sessions.flatMap(([session, split]) =>
      sessionExamples(this.chat, session, split, this.context, this.stats),
    );
  }
}

/**
 * Index of the last message, from `from` on, more than `gapMs` after the one before it; 0 when
 * there is none (pure).
 */
export function lastGap(messages: readonly DatasetMessage[], gapMs: number, from = 1): number {
  for (let i = messages.length - 1; i >= Math.max(1, from); i--) {
    if ((messages[i] as DatasetMessage).sentAt - (messages[i - 1] as DatasetMessage).sentAt > gapMs) return i;
  }
  return 0;
}
