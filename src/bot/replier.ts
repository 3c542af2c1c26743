import type { Api } from "grammy";
import type { Manifest } from "../dataset/manifest.ts";
import type { ContextSettings } from "../inference/conversation-context.ts";
import type { Conversations } from "../inference/conversations.ts";
import type { AdapterChoice } from "../inference/engine.ts";
import { EmptyReplyError, RepeatedReplyError } from "../inference/inference.errors.ts";
import { imitatedReplyTokens } from "../inference/reply-shape.ts";
import type { BotMessagesRepository, ConversationRef } from "./bot-messages.repository.ts";
import { conversationPrompt, type PromptDeps } from "./conversation-prompt.ts";

/** Where a conversation's replies go, and the person's name when the history does not know them. */
export type ReplyTarget = ConversationRef & { chatId: number; name: string; groupTitle?: string | undefined };

export type ReplierDeps = {
  api: Api;
  messages: BotMessagesRepository;
  conversations: Conversations;
  prompt: Omit<PromptDeps, "messages" | "settings">;
  /**
   * The prompt's settings (conversation-context.ts's contextSettings) for the latest ready
   * dataset's manifest, asked for each reply: a new dataset's session gap applies at once.
   */
  contextSettings: (manifest: Manifest | undefined) => ContextSettings;
  /** TWIN_MAX_REPLY_TOKENS: the cap on every reply. */
  maxReplyTokens: number;
  adapter: () => AdapterChoice | undefined;
  paused: () => boolean;
  quietMs: number;
  typing: { msPerChar: number; maxMs: number };
  onError: (error: unknown, target: ReplyTarget) => void;
  /**
   * The datasets (the app's repository): the latest ready one's manifest says how long the imitated
   * speaker's turns run, and so how long a reply may be (reply-shape.ts). With no ready dataset,
   * every reply may take TWIN_MAX_REPLY_TOKENS (`maxReplyTokens`).
   */
  datasets: { latestReady(): Promise<{ manifest: Record<string, unknown> | null } | undefined> };
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** One key per conversation: a friend's group conversation is not their private one. */
const keyOf = ({ personId, mode, groupId }: ConversationRef) =>
  groupId === undefined ? `${mode}:${personId}` : `${mode}:${personId}@${groupId}`;

/**
 * Answers conversations the way a person would: after a burst of messages goes quiet, once, with
 * the reply sent message by message behind a typing indicator. Everything goes through the
 * database first (what came in, then the reply), so a restart resumes instead of losing or
 * repeating: `resume()` picks up whatever was left unanswered or unsent.
 */
export class Replier {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly targets = new Map<string, ReplyTarget>();
  private readonly stopping = new AbortController();

  constructor(private readonly deps: ReplierDeps) {}

  /** Someone wrote: (re)start the quiet period; the reply covers everything until then. */
  schedule(target: ReplyTarget): void {
    const key = keyOf(target);
    this.targets.set(key, target);
    clearTimeout(this.timers.get(key));
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        void this.run(key);
      }, this.deps.quietMs),
    );
  }

  /** Answers what a previous run left (after a restart), right away. */
  async resume(targets: ReplyTarget[]): Promise<void> {
    for (const target of targets) {
      this.targets.set(keyOf(target), target);
      void this.run(keyOf(target));
    }
  }

  /** Forgets a conversation's live state (after /forget or when the adapter changes). */
  async reset(ref: ConversationRef): Promise<void> {
    clearTimeout(this.timers.get(keyOf(ref)));
    this.timers.delete(keyOf(ref));
    await this.deps.conversations.reset(keyOf(ref));
  }

  get busy(): number {
    return this.timers.size + this.running.size;
  }

  /**
   * Stops at once (SIGTERM): a generation in progress is aborted and nothing more is sent. What was
   * not answered stays pending in the database, and what was stored but not sent stays unsent:
   * `resume()` after the restart answers and sends it, so nothing is lost and nothing sent twice.
   */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  /** Resolves once nothing is scheduled or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.busy > 0) await sleep(20);
  }

  private run(key: string): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve();
    const current = this.running.get(key);
    if (current) {
      this.again.add(key); // answered after the running reply, as a second round
      return current;
    }
    const work = this.answer(key).finally(() => {
      this.running.delete(key);
      if (this.again.delete(key)) void this.run(key);
    });
    this.running.set(key, work);
    return work;
  }

  private async answer(key: string): Promise<void> {
    const target = this.targets.get(key) as ReplyTarget;
    try {
      await this.sendUnsent(target);
      const pending = await this.deps.messages.pending(target);
      const last = pending.at(-1);
      if (!last) return;
      if (this.deps.paused()) {
        await this.deps.messages.storeReply(target, last.id, []); // paused: no model time
        return;
      }
      await this.deps.api.sendChatAction(target.chatId, "typing").catch(() => undefined);
      const dataset = await this.deps.datasets.latestReady();
      const manifest = (dataset?.manifest ?? undefined) as Manifest | undefined;
      const { prompt, recentReplies } = await conversationPrompt(
        { ...this.deps.prompt, messages: this.deps.messages, settings: this.deps.contextSettings(manifest) },
        target,
        target.name,
        target.groupTitle ?? null,
      );
      const adapter = this.deps.adapter();
      const servedBy = adapter?.label ?? "base";
      const options = {
        signal: this.stopping.signal,
        maxTokens: this.replyTokens(target, manifest),
        recentReplies,
      };
      let messages: string[];
      try {
        messages = (await this.deps.conversations.reply(key, prompt, adapter, options)).messages;
      } catch (error) {
        if (!(error instanceof EmptyReplyError || error instanceof RepeatedReplyError)) throw error;
        if (this.stopping.signal.aborted) return;
        // Nothing, every generation, or only a recent reply again: left unanswered, as people do,
        // and shown to the owner (/status, /log).
        const reason = error instanceof EmptyReplyError ? "empty" : "repeat";
        await this.deps.messages.storeNoReply(target, last.id, servedBy, reason);
        this.deps.onError(error, target);
        return;
      }
      if (this.stopping.signal.aborted) return; // cut short: still pending, answered after the restart
      await this.deps.messages.storeReply(target, last.id, messages, servedBy);
      await this.sendUnsent(target);
    } catch (error) {
      this.deps.onError(error, target);
    }
  }

  /**
   * How long this reply may be: the 95th percentile of the imitated speaker's turns in the latest
   * dataset (the owner when a friend talks, the friend in /talk), capped by TWIN_MAX_REPLY_TOKENS.
   */
  private replyTokens(target: ReplyTarget, manifest: Manifest | undefined): number {
    const cap = this.deps.maxReplyTokens;
    return imitatedReplyTokens(manifest, target.mode === "friend" ? "owner" : target.personId, cap);
  }

  private async sendUnsent(target: ReplyTarget): Promise<void> {
    for (const message of await this.deps.messages.unsent(target)) {
      if (this.stopping.signal.aborted) return; // sent after the restart
      await this.deps.api.sendChatAction(target.chatId, "typing").catch(() => undefined);
      await sleep(Math.min(this.deps.typing.maxMs, message.text.length * this.deps.typing.msPerChar));
      const sent = await this.deps.api.sendMessage(target.chatId, message.text);
      await this.deps.messages.markSent(message.id, sent.message_id);
    }
  }
}
