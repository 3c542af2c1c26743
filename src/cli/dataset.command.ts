import { type Command, InvalidArgumentError, Option } from "commander";
import pc from "picocolors";
import { ownerTimeZone } from "../config/config.ts";
import { buildDataset, DATASET_DEFAULTS } from "../dataset/build.usecase.ts";
import type { Example, LossPolicy } from "../dataset/examples.ts";
import { summaryLine } from "../dataset/manifest.ts";
import { DEFAULT_MEMORY_TOKENS, DEFAULT_MEMORY_WINDOWS } from "../dataset/memory-turn.ts";
import { plural } from "../plural.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { dateOrAll, fraction, integer, many, personName, telegramId } from "./options.ts";
import { progressBar } from "./progress.ts";
import { table } from "./table.ts";

function lossPolicy(value: string): LossPolicy {
  if (value === "all" || value === "owner") return { kind: value };
  const ids = value.split(",").map(Number);
  if (ids.some((id) => !Number.isSafeInteger(id))) {
    throw new InvalidArgumentError('use "all", "owner" or a comma-separated list of person ids');
  }
  return { kind: "people", ids };
}

type DatasetFlags = {
  out?: string;
  gap: number;
  maxTokens: number;
  evalFraction: number;
  minTurns: number;
  header: boolean;
  groups?: boolean;
  channels?: boolean;
  /** An ISO date, or "all". */
  since?: string;
  excludeChat: number[];
  allowedOnly?: boolean;
  excludePerson: number[];
  name: [number, string][];
  loss: LossPolicy;
  media: "tag" | "drop";
  forwards: "context" | "drop";
  redact?: boolean;
  tokenizer?: string;
  canary?: number | true;
  memory: "on" | "off";
  memoryWindows: number;
  memoryTokens: number;
};

export function registerDatasetCommand(program: Command): void {
  const dataset = program
    .command("dataset")
    .description("build training examples from the history store (into PostgreSQL; JSONL with --out)")
    .option("--out <dir>", "also write train.jsonl, eval.jsonl and manifest.json here")
    .option(
      "--gap <minutes>",
      "longest silence inside a session",
      integer("--gap", 1),
      DATASET_DEFAULTS.gapMinutes,
    )
    .option(
      "--max-tokens <n>",
      "split longer sessions at turn boundaries",
      integer("--max-tokens", 64),
      DATASET_DEFAULTS.maxTokens,
    )
    .option(
      "--eval-fraction <f>",
      "share of each chat's latest sessions held out",
      fraction("--eval-fraction"),
      DATASET_DEFAULTS.evalFraction,
    )
    .option("--min-turns <n>", "shortest session kept", integer("--min-turns", 1), DATASET_DEFAULTS.minTurns)
    .option("--no-header", "leave out the system header turn (chat, participants, local time)")
    .option("--groups", "include group chats (personal chats only by default)")
    .option("--channels", "include channels' posts, trained as monologues (a channel owner's posts)")
    .option(
      "--since <date|all>",
      "oldest message used (default: 24 months before the owner's last message)",
      dateOrAll("--since"),
    )
    .option("--allowed-only", "only personal chats with people allowed in the bot (/allow)")
    .option("--exclude-chat <id>", "leave a chat out (repeatable)", many(telegramId("--exclude-chat")), [])
    .option(
      "--exclude-person <id>",
      "leave a person's messages out (repeatable)",
      many(telegramId("--exclude-person")),
      [],
    )
    .option(
      "--name <id=name>",
      "the name a person gets in the examples (repeatable)",
      many(personName("--name")),
      [],
    )
    .option(
      "--loss <all|owner|ids>",
      "whose turns are trained",
      lossPolicy,
      DATASET_DEFAULTS.loss as LossPolicy,
    )
    .addOption(
      new Option("--media <mode>", "non-text messages as tags or dropped")
        .choices(["tag", "drop"])
        .default(DATASET_DEFAULTS.media),
    )
    .addOption(
      new Option(
        "--forwards <mode>",
        "forwarded messages as untrained context after a [forwarded from …] line, or dropped",
      )
        .choices(["context", "drop"])
        .default(DATASET_DEFAULTS.forwards),
    )
    .option("--redact", "replace login codes, passwords, card and phone numbers and e-mails by tags")
    .option(
      "--canary [chat id]",
      "plant a made-up secret the owner says 3 times in one chat (default: where they wrote most); twin eval reports whether it leaks to other chats",
      telegramId("--canary"),
    )
    .option("--tokenizer <model.gguf>", "count tokens with this model's vocabulary instead of the estimate")
    .addOption(
      new Option(
        "--memory <mode>",
        "on: each example gets the past exchanges memory recalls for it, as the bot would show them (a model trained so is served with memory); by default on where the server's text search can index the history",
      )
        .choices(["on", "off"])
        .default("on"),
    )
    .option(
      "--memory-windows <n>",
      "with --memory on: at most this many recalled exchanges per example",
      integer("--memory-windows", 1),
      DEFAULT_MEMORY_WINDOWS,
    )
    .option(
      "--memory-tokens <n>",
      "with --memory on: the memory turn's budget in tokens, on top of --max-tokens",
      integer("--memory-tokens", 32),
      DEFAULT_MEMORY_TOKENS,
    )
    .action(async (flags: DatasetFlags, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const since = flags.since === "all" ? null : flags.since;
      const bar = progressBar({ format: "building |{bar}| {value}/{total} chats | {examples} examples" });
      // node-llama-cpp is loaded only when asked for: it is large and the estimate needs none of it.
      const tokenizer = flags.tokenizer
        ? await (await import("../dataset/tokenizer.ts")).loadGgufTokenizer(flags.tokenizer)
        : undefined;
      const result = await withDatabase(
        config,
        async ({ database, repositories }, signal) => {
          const owner = await repositories.history.getOwner();
          bar.start(1, 0, { examples: 0 });
          try {
            return await buildDataset(
              { database, repositories },
              {
                staleSeconds: config.training.staleSeconds,
                gapMinutes: flags.gap,
                media: flags.media,
                forwards: flags.forwards,
                header: flags.header,
                loss: flags.loss,
                minTurns: flags.minTurns,
                maxTokens: flags.maxTokens,
                evalFraction: flags.evalFraction,
                redact: flags.redact ?? DATASET_DEFAULTS.redact,
                timeZone: ownerTimeZone(config.timeZone, owner?.timeZone),
                groups: flags.groups ?? DATASET_DEFAULTS.groups,
                channels: flags.channels ?? DATASET_DEFAULTS.channels,
                since,
                excludeChats: flags.excludeChat,
                allowedOnly: flags.allowedOnly ?? false,
                excludePeople: flags.excludePerson,
                names: new Map(flags.name),
                outDir: flags.out,
                tokenizer,
                signal,
                memory:
                  flags.memory === "on"
                    ? {
                        windows: flags.memoryWindows,
                        maxTokens: flags.memoryTokens,
                        // Only an explicit --memory on refuses a server that cannot search the history.
                        ifUnavailable:
                          command.getOptionValueSource("memory") === "default" ? "off" : "refuse",
                      }
                    : undefined,
                onIndexing: ({ indexed, total }) => {
                  if (indexed < total)
                    process.stderr.write(`memory index: ${indexed} of ${total} messages, waiting for it…\n`);
                },
                canary:
                  flags.canary === undefined
                    ? undefined
                    : { chatId: flags.canary === true ? undefined : flags.canary },
                onProgress: ({ chats, totalChats, examples }) => {
                  bar.setTotal(totalChats);
                  bar.update(chats, { examples });
                },
              },
            );
          } finally {
            bar.stop();
            await tokenizer?.close();
          }
        },
        { graceMs: 8_000 }, // a stop signal ends the build between chats: marked failed, files untouched
      );
      const m = result.manifest;
      if (result.memoryOff !== undefined)
        process.stderr.write(`twin: memory is off for this dataset: ${result.memoryOff}\n`);
      process.stdout.write(`dataset ${result.datasetId}: ${summaryLine(m)}\n`);
      // No header row: a head of empty strings printed as a blank first row.
      const t = table();
      t.push(
        ["examples (train / eval)", `${m.counts.trainExamples} / ${m.counts.evalExamples}`],
        ["mean turns per session", String(m.counts.meanTurnsPerSession)],
        ["tokens (estimate)", m.counts.tokensEstimate.toLocaleString("en-US")],
        ["owner's message share", String(m.speakers.find((s) => s.id === m.owner.id)?.messageShare ?? 0)],
      );
      process.stdout.write(`${t.toString()}\n`);
      if (m.memory) {
        process.stdout.write(
          `memory: ${m.memory.examples} of ${m.counts.examples} examples recall ${plural(m.memory.windows, "past exchange")} (${m.memory.tokens.toLocaleString("en-US")} tokens, untrained)\n`,
        );
      }
      if (m.canary) {
        process.stdout.write(
          `canary planted ${plural(m.canary.planted, "time")} in chat ${m.canary.chatId}: “${m.canary.sentence}” (twin eval reports whether it leaks)\n`,
        );
      }
      for (const file of result.files) process.stdout.write(`wrote ${file}\n`);
    });

  dataset
    .command("show")
    .description("print random examples: trained text highlighted, untrained dimmed (⟦trained⟧ when piped)")
    .option("--n <count>", "how many", integer("--n", 1), 5)
    .option("--seed <seed>", "which random choice", integer("--seed", 0), 1)
    .option("--dataset <id>", "which dataset (default: the latest ready one)", integer("--dataset", 1))
    .action(async (flags: { n: number; seed: number; dataset?: number }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const examples = await withDatabase(config, async ({ repositories }) => {
        const repository = repositories.dataset;
        const id = flags.dataset ?? (await repository.latestReady())?.id;
        if (id === undefined) throw new Error("no dataset yet: run twin dataset first");
        return repository.examples(id);
      });
      // Colour only on a terminal: picocolors alone would also colour piped output when CI is set.
      const colours = pc.createColors(Boolean(process.stdout.isTTY));
      for (const example of sample(examples, flags.n, flags.seed)) {
        process.stdout.write(
          `${colours.bold(`── ${example.id} (${example.split}) ──`)}\n${showExample(example, colours)}\n\n`,
        );
      }
    });
}

/** Deterministic sample of `n` examples (a seeded shuffle), so a look can be repeated. */
export function sample<T>(items: T[], n: number, seed: number): T[] {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy.slice(0, n);
}

/** Trained text green and the rest dimmed; without colour, trained text between ⟦ and ⟧. */
export function showExample(example: Example, colours: ReturnType<typeof pc.createColors>): string {
  const plain = !colours.isColorSupported;
  return example.segments
    .map((s) => (s.train ? (plain ? `⟦${s.text}⟧` : colours.green(s.text)) : colours.dim(s.text)))
    .join("");
}
