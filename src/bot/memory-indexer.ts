import createDebug from "debug";
import type { MemoryRepository } from "../history/memory/memory.repository.ts";
import type { Log } from "./log.ts";

const debug = createDebug("twin:bot:memory");

/**
 * The memory index kept up to date inside the bot: a run at start (the backfill of a database that
 * had history before the index existed), after each of its imports and pulls, and when the watch
 * sees an import that ended elsewhere (`twin import` in a container whose background run was cut
 * short with it). Runs never overlap in this process; one asked for while another runs happens once
 * more after it, so messages stored during a run are indexed too. Another process indexing answers
 * "busy"; the watch asks again until a run of ours gets its turn. Failures are logged, never thrown:
 * the bot answers without the index.
 */
export class MemoryIndexer {
  private running: Promise<void> | undefined;
  private again = false;
  private refusalLogged = false;
  /** When the latest import had ended as of our last run (but a busy one): later ones are not indexed yet. */
  private coveredUntil: Date | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly memory: Pick<MemoryRepository, "index">,
    /** When the latest import ended (history.lastImportEnded). */
    private readonly lastImportEnded: () => Promise<Date | undefined>,
    private readonly log: Log,
  ) {}

  /** Indexes what is not indexed yet, in the background. */
  request(): void {
    if (this.abort.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** For the bot's periodic watch: a run when an import ended since our last complete run. */
  async watch(): Promise<void> {
    if (this.running || this.abort.signal.aborted) return;
    const ended = await this.lastImportEnded();
    if (ended && (!this.coveredUntil || ended > this.coveredUntil)) this.request();
  }

  /** Resolves once no run is going on or asked for. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Aborts the run in progress (it stops after its batch) and waits for it. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.idle();
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      let ended: Date | undefined;
      try {
        // Read first: an import ending during the run may have stored after the run passed its chat.
        ended = await this.lastImportEnded();
        const outcome = await this.memory.index({ signal: this.abort.signal });
        debug("index run: %s, %d of %d messages", outcome.status, outcome.indexed, outcome.total);
        // Busy: the other process may stop short (killed with its container), so the watch asks again.
        // Anything else is not retried before the next import: a refusal or an error would only repeat.
        if (outcome.status !== "busy") this.coveredUntil = ended;
        // Said once: /status shows it too, and every later run would say it again.
        if (outcome.status === "refused" && !this.refusalLogged) {
          this.refusalLogged = true;
          this.log.info(`memory is off: ${outcome.refusal ?? "this server cannot search Russian text"}`);
        }
      } catch (error) {
        if (this.abort.signal.aborted) return;
        this.log.error("indexing the memory", error);
        if (ended) this.coveredUntil = ended;
      }
    } while (this.again && !this.abort.signal.aborted);
  }
}
