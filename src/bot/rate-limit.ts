import type { BotMessagesRepository, ConversationRef } from "./bot-messages.repository.ts";
import type { ReplyTarget } from "./replier.ts";

/** The rate limit counts a person's messages over this window (TWIN_RATE_LIMIT is per minute). */
export const RATE_WINDOW_MS = 60_000;
/** Stored-but-unanswered messages one friend may have; later ones are stored and skipped. */
export const MAX_BACKLOG = 200;
/** How long a release that failed (the database away) waits before it tries again. */
const RETRY_MS = 10_000;

/** A sliding window per person: at most `limit` messages in any `windowMs` (pure; the clock is injected). */
export class RateWindow {
  private readonly hits = new Map<number, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = RATE_WINDOW_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Messages this person may still send now. */
  room(personId: number): number {
    return Math.max(0, this.limit - this.recent(personId).length);
  }

  /** Counts one message if there is room; false when the window is full. */
  take(personId: number): boolean {
    const recent = this.recent(personId);
    if (recent.length >= this.limit) return false;
    recent.push(this.now());
    this.hits.set(personId, recent);
    return true;
  }

  /** Milliseconds until this person has room again (0: now). */
  wait(personId: number): number {
    const recent = this.recent(personId);
    if (recent.length < this.limit) return 0;
    return (recent[recent.length - this.limit] as number) + this.windowMs - this.now();
  }

  private recent(personId: number): number[] {
    const now = this.now();
    const recent = (this.hits.get(personId) ?? []).filter((t) => now - t < this.windowMs);
    if (recent.length === 0) this.hits.delete(personId);
    else this.hits.set(personId, recent);
    return recent;
  }
}

/**
 * What became of a friend's message: `answer` (within the limit, the replier has it), `held` (over
 * the limit: answered in a later round, as the window allows) or `skipped` (over the backlog cap:
 * kept, never answered). `stored` is false for an update that was stored before (a redelivery);
 * `note` is true for the first message of a row held or skipped, the one the friend is told about.
 */
export type Admission = { fate: "answer" | "held" | "skipped"; stored: boolean; note: boolean };

export type RateGateDeps = {
  messages: BotMessagesRepository;
  window: RateWindow;
  /** Hands a conversation to the replier (`Replier.schedule`). */
  schedule: (target: ReplyTarget) => void;
  /** Where a conversation's reply goes, for released messages whose delivery this process did not see (after a restart). */
  targetOf: (ref: ConversationRef) => Promise<ReplyTarget>;
  /** Whether the friend may still be answered (a revoked friend's held messages stay held). */
  allowed: (personId: number) => Promise<boolean>;
  onError: (error: unknown, personId: number) => void;
  maxBacklog?: number | undefined;
};

const keyOf = ({ personId, groupId }: ConversationRef) => `${personId}@${groupId ?? "private"}`;

/**
 * The friend-side rate limit. Every message is stored at once; those within the limit go to the
 * replier, those over it are held and given to the replier in later rounds, oldest first, as the
 * window frees (one timer per person); past `maxBacklog` unanswered messages, new ones are stored
 * skipped. A person's admissions and releases run one at a time, so the order holds. Held messages
 * live in the database: `resume` after a restart releases them.
 */
export class RateGate {
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private readonly queues = new Map<number, Promise<unknown>>();
  private readonly targets = new Map<string, ReplyTarget>();
  private stopped = false;

  constructor(private readonly deps: RateGateDeps) {}

  /** Stores a friend's message (conversation `target`, with its marker line if any) and decides its fate. */
  admit(
    target: ReplyTarget,
    text: string,
    updateId: number,
    marker: string | null = null,
  ): Promise<Admission> {
    const { personId } = target;
    return this.exclusive(personId, async () => {
      const { messages, window } = this.deps;
      this.targets.set(keyOf(target), target);
      const backlog = await messages.backlog(personId);
      if (backlog.unanswered >= (this.deps.maxBacklog ?? MAX_BACKLOG)) {
        const stored =
          (await messages.addIncoming(target, text, updateId, { skipped: true, marker })) !== undefined;
        return { fate: "skipped", stored, note: stored && !backlog.lastSkipped };
      }
      if (backlog.held === 0 && window.room(personId) > 0) {
        const stored = (await messages.addIncoming(target, text, updateId, { marker })) !== undefined;
        if (stored) {
          window.take(personId);
          this.deps.schedule(target);
        }
        return { fate: "answer", stored, note: false };
      }
      const stored =
        (await messages.addIncoming(target, text, updateId, { held: true, marker })) !== undefined;
      if (stored) this.arm(personId);
      return { fate: "held", stored, note: stored && backlog.held === 0 };
    });
  }

  /** After a restart: whatever was held is released as the (fresh) window allows. */
  async resume(): Promise<void> {
    for (const personId of await this.deps.messages.heldPeople()) this.arm(personId);
  }

  /** Stops the timers; held messages stay in the database for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.queues.values()]);
  }

  private arm(personId: number, atLeastMs = 0): void {
    if (this.stopped || this.timers.has(personId)) return;
    const wait = Math.max(atLeastMs, this.deps.window.wait(personId));
    this.timers.set(
      personId,
      setTimeout(() => void this.release(personId), wait),
    );
  }

  private release(personId: number): Promise<void> {
    return this.exclusive(personId, async () => {
      this.timers.delete(personId);
      if (this.stopped) return;
      try {
        if (!(await this.deps.allowed(personId))) return; // revoked: held until they are allowed and write again
        const room = this.deps.window.room(personId);
        if (room > 0) {
          const { released, refs } = await this.deps.messages.release(personId, room);
          for (let i = 0; i < released; i++) this.deps.window.take(personId);
          for (const ref of refs) {
            this.deps.schedule(this.targets.get(keyOf(ref)) ?? (await this.deps.targetOf(ref)));
          }
        }
        if ((await this.deps.messages.backlog(personId)).held > 0) this.arm(personId);
      } catch (error) {
        this.deps.onError(error, personId);
        this.arm(personId, RETRY_MS);
      }
    });
  }

  /** Runs `work` after everything queued for this person before it. */
  private exclusive<T>(personId: number, work: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(personId) ?? Promise.resolve()).then(work, work);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(personId, tail);
    void tail.then(() => {
      if (this.queues.get(personId) === tail) this.queues.delete(personId);
    });
    return run;
  }
}
