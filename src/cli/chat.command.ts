import path from "node:path";
import readline from "node:readline/promises";
import type { Command } from "commander";
import type { App } from "../app.ts";
import type { Config } from "../config/config.ts";
import { MESSAGE_PREFIX } from "../dataset/chatml.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { AmbiguousPersonError, NoSuchPersonError } from "../history/history.errors.ts";
import type { MemoryScope, Retriever } from "../history/memory/retriever.ts";
import { parsePersonQuery } from "../history/person-lookup.ts";
import { buildConversationContext, contextSettings } from "../inference/conversation-context.ts";
import { Conversations } from "../inference/conversations.ts";
import { loadConversationContext } from "../inference/history-context.ts";
import { EmptyReplyError, RepeatedReplyError } from "../inference/inference.errors.ts";
import type { PromptTurn } from "../inference/prompt.ts";
import { imitatedReplyTokens, RECENT_REPLIES } from "../inference/reply-shape.ts";
import { adapterFile } from "../inference/serving.ts";
import { plural } from "../plural.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { openEngine, resolveModelPath } from "./engine-setup.ts";
import { replyPrinter } from "./reply-printer.ts";
import { typedLines } from "./typed-lines.ts";

/**
 * The owner and the person named by --with/--as, by the one lookup rule (history/person-lookup.ts):
 * a name that is not exactly one person's lists the candidates, a name nobody has lists the people
 * the owner talks with most (both exit 2): a conversation always has its real history as context.
 */
async function conversationWith(
  { repositories }: Pick<App, "repositories">,
  option: string,
  text: string | undefined,
  gapMs: number,
) {
  const query = parsePersonQuery(text ?? "");
  if (!query) throw new Error(`${option} needs a name or a user id`);
  const lookup = await repositories.history.lookupPerson(query);
  if (lookup.found)
    return loadConversationContext(repositories.history, lookup.found.id, lookup.found.name ?? "", gapMs);
  if (lookup.candidates.length > 0) throw new AmbiguousPersonError(option, text as string, lookup.candidates);
  const partners = await repositories.history.conversationPartners({
    limit: 10,
    gapMinutes: gapMs / 60_000,
  });
  throw new NoSuchPersonError(
    option,
    text as string,
    partners.map((person) => ({ ...person, lastMessageAt: null })),
  );
}

async function activeAdapterFile(
  config: Config,
  { runs }: Pick<App["repositories"], "runs">,
): Promise<string | undefined> {
  const active = await runs.activeAdapter();
  return active ? adapterFile(runs, path.join(config.dataDir, "adapters"), active) : undefined;
}

type ChatOptions = { with?: string; as?: string; model?: string; adapter?: string };

/** Everything the conversation needs from the database, read before any model is opened. */
async function prepareChat(
  config: Config,
  { repositories }: Pick<App, "repositories">,
  options: ChatOptions,
) {
  // The latest dataset cut the sessions the model learned, and measured how long the imitated
  // speaker's turns run.
  const manifest = (await repositories.dataset.latestReady())?.manifest as Manifest | undefined;
  const settings = contextSettings(config, manifest, (await repositories.history.getOwner())?.timeZone);
  return {
    manifest,
    settings,
    // The person first: a name that needs choosing is said before any model is looked for.
    context: await conversationWith(
      { repositories },
      options.with ? "--with" : "--as",
      options.with ?? options.as,
      settings.gapMs,
    ),
    modelPath: await resolveModelPath({ config, repositories }, options.model),
    // Without --adapter or TWIN_ADAPTER: the adapter the bot serves (the database's active one).
    activeAdapter: await activeAdapterFile(config, repositories),
  };
}

/** The conversation in the terminal, until /quit or the end of the input. */
async function converse(
  config: Config,
  { manifest, settings, context, modelPath, activeAdapter }: Awaited<ReturnType<typeof prepareChat>>,
  options: ChatOptions,
  retriever: Retriever | undefined,
): Promise<void> {
  const inference = config.inference;
  const { engine, adapter } = await openEngine(config, modelPath, {
    sequences: 1,
    adapterPath: options.adapter ?? inference.adapter ?? activeAdapter,
  });
  const conversations = new Conversations(engine);
  const you = options.with ? context.person.name : context.owner.name;
  const twin = options.with ? context.owner.name : context.person.name;
  // The owner's turns when the twin answers as the owner (--with), the person's when it plays them (--as).
  const maxTokens = imitatedReplyTokens(
    manifest,
    options.with ? "owner" : context.person.id,
    inference.maxReplyTokens,
  );
  const personId = context.person.id as number; // found by the lookup
  const scope: MemoryScope = options.with ? { kind: "friend", personId } : { kind: "all" };
  const input = readline.createInterface({ input: process.stdin, output: process.stdout });
  const lines = typedLines(input);
  process.stdout.write(
    `You are ${you}; the twin is ${twin} (${plural(context.history.length, "turn")} of real history as context${adapter ? ", adapter on" : ""}).\n/reset starts over, /quit leaves.\n`,
  );
  const live: PromptTurn[] = [];
  // The header carries the conversation's start, as a dataset session's does: fixed, so the
  // prompt's prefix (and the sequence holding it) stays valid from turn to turn.
  let startedAt = Date.now();
  input.setPrompt(`${you}> `);
  try {
    for (;;) {
      input.prompt(true);
      const typed = await lines.next();
      if (typed === undefined || typed.trim() === "/quit") break;
      if (typed.trim() === "/reset") {
        live.length = 0;
        startedAt = Date.now();
        await conversations.reset("terminal");
        process.stdout.write("(new conversation)\n");
        continue;
      }
      // What was typed while the twin answered comes with it, as one burst, like a friend's.
      const burst = [typed, ...lines.takeQueued()].filter((line) => line.trim());
      if (burst.length === 0) continue;
      const last = live.at(-1);
      if (last?.speaker === you) last.messages.push(...burst);
      else live.push({ speaker: you, messages: burst });
      const { prompt } = await buildConversationContext(
        { retriever, countTokens: engine.countTokens },
        settings,
        {
          header: {
            chat: { id: personId, type: "personal_chat", title: null },
            participants: [context.person.name, context.owner.name],
            startedAt,
          },
          recent: context.history,
          // The terminal's conversation is stored nowhere: only the real sessions shown are left out of memory.
          recentSpans: context.spans,
          live,
          replyAs: twin,
          scope,
          names: context.names,
        },
      );
      // Keys typed meanwhile wait in the terminal, unechoed, instead of landing in the reply.
      input.pause();
      const recentReplies = live
        .filter((turn) => turn.speaker === twin)
        .slice(-RECENT_REPLIES)
        .map((turn) => turn.messages.join("\n"));
      // Printed once generated: a turn may be cut back, generated again or resampled first.
      const messages = await conversations
        .reply("terminal", prompt, adapter, { maxTokens, recentReplies })
        .then(
          (reply) => reply.messages,
          (error: unknown) => {
            if (error instanceof EmptyReplyError || error instanceof RepeatedReplyError) return [];
            throw error;
          },
        );
      const printer = replyPrinter(twin, (text) => process.stdout.write(text));
      printer.push(messages.map((message) => `${MESSAGE_PREFIX}${message}`).join("\n"));
      if (printer.end()) process.stdout.write("\n");
      else process.stdout.write(`(${twin} says nothing)\n`);
      input.resume();
      if (messages.length > 0) live.push({ speaker: twin, messages });
    }
  } finally {
    input.close();
    await engine.dispose();
  }
}

export function registerChatCommand(program: Command): void {
  program
    .command("chat")
    .description("talk to the twin in the terminal, with the same prompts and adapter as the bot")
    .option("--with <name>", "you are this person; the twin answers as the owner")
    .option("--as <name>", "you are the owner; the twin plays this person")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .option("--adapter <gguf>", "LoRA adapter GGUF (default: TWIN_ADAPTER)")
    .action(async (options: ChatOptions, command: Command) => {
      if (Boolean(options.with) === Boolean(options.as)) {
        throw new Error(
          "give exactly one of --with <name> (you play them) or --as <name> (the twin plays them)",
        );
      }
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const chat = await withDatabase(config, (app) => prepareChat(config, app, options));
      // Without memory the database is closed while people type: an embedded server is no child
      // process left running beside the chat. Memory recalls from it at every turn: open again.
      if (!chat.settings.memory.enabled) return converse(config, chat, options, undefined);
      await withDatabase(config, (app) => converse(config, chat, options, app.repositories.memory.retriever));
    });
}
