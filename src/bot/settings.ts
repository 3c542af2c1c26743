import type { PostgresStorage } from "./storage.ts";

type Stored = { paused: boolean };

/** The bot's own switches, kept in PostgreSQL so a restart keeps them. */
export class BotSettings {
  private constructor(
    private readonly storage: PostgresStorage<Stored>,
    private values: Stored,
  ) {}

  static async load(storage: PostgresStorage<Stored>): Promise<BotSettings> {
    return new BotSettings(storage, (await storage.read("bot")) ?? { paused: false });
  }

  get paused(): boolean {
    return this.values.paused;
  }

  async setPaused(paused: boolean): Promise<void> {
    this.values = { ...this.values, paused };
    await this.storage.write("bot", this.values);
  }
}
