import { type Api, InlineKeyboard } from "grammy";
import type { Log } from "./log.ts";

export type JobHandle = {
  signal: AbortSignal;
  /** The latest progress line; the status message shows it at most every `editEveryMs`. */
  report(text: string): void;
};

/** "▓▓▓▓░░░░░░ 40%": a progress bar for a Telegram message. */
export function progressBar(done: number, total: number, width = 10): string {
  const share = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const filled = Math.round(share * width);
  return `${"▓".repeat(filled)}${"░".repeat(width - filled)} ${Math.round(share * 100)}%`;
}

/**
 * Long work started from the bot (import, dataset): it runs in the background and reports by
 * editing one status message, at most every few seconds, with a Cancel button.
 */
export class Jobs {
  private nextId = 1;
  private readonly active = new Map<
    number,
    { title: string; controller: AbortController; done: Promise<void>; latest: string }
  >();

  constructor(
    private readonly api: Api,
    private readonly editEveryMs: number,
    private readonly log: Log,
  ) {}

  /** Running jobs with their latest progress line (for /status). */
  titles(): string[] {
    return [...this.active.values()].map((job) => (job.latest ? `${job.title} (${job.latest})` : job.title));
  }

  cancel(id: number): boolean {
    const job = this.active.get(id);
    job?.controller.abort();
    return Boolean(job);
  }

  async idle(): Promise<void> {
    await Promise.all([...this.active.values()].map((job) => job.done));
  }

  /** Starts `work`; its result text (or its error) becomes the status message's final text. */
  start(chatId: number, title: string, work: (job: JobHandle) => Promise<string>): number {
    const id = this.nextId++;
    const controller = new AbortController();
    const cancel = new InlineKeyboard().text("Cancel", `job:cancel:${id}`);
    const done = (async () => {
      const status = await this.api.sendMessage(chatId, `${title}…`, { reply_markup: cancel });
      let shown = `${title}…`;
      let latest = shown;
      let lastEdit = 0;
      let timer: NodeJS.Timeout | undefined;
      const edit = async (text: string, final: boolean) => {
        if (text === shown && !final) return;
        shown = text;
        lastEdit = Date.now();
        await this.api
          .editMessageText(chatId, status.message_id, text, final ? {} : { reply_markup: cancel })
          .catch((error) => this.log.error(`editing the status of “${title}”`, error));
      };
      const report = (text: string) => {
        latest = `${title}\n${text}`;
        const job = this.active.get(id);
        if (job) job.latest = text.split("\n")[0] as string;
        if (timer) return;
        const wait = Math.max(0, lastEdit + this.editEveryMs - Date.now());
        timer = setTimeout(() => {
          timer = undefined;
          void edit(latest, false);
        }, wait);
      };
      let final: string;
      try {
        final = `${title}: ${await work({ signal: controller.signal, report })}`;
      } catch (error) {
        final = controller.signal.aborted
          ? `${title}: cancelled. Everything stored before stays.`
          : `${title} failed: ${(error as Error).message}`;
        if (!controller.signal.aborted) this.log.error(title, error);
      }
      clearTimeout(timer);
      await edit(final, true);
    })()
      .catch((error) => this.log.error(title, error))
      .finally(() => this.active.delete(id));
    this.active.set(id, { title, controller, done, latest: "" });
    return id;
  }
}
