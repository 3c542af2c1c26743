import path from "node:path";
import readline from "node:readline/promises";
import type { Command } from "commander";
import { type Config, machineTimeZone } from "../config/config.ts";
import { headerLine } from "../dataset/examples.ts";
import type { Database } from "../db/client.ts";
import { Conversations } from "../inference/conversations.ts";
import { loadConversationContext } from "../inference/history-context.ts";
import { buildPrompt, type PromptTurn } from "../inference/prompt.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import { adapterFile } from "../training/serving.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { openEngine, resolveModelPath } from "./engine-setup.ts";

/** Hides the `>>> ` at the start of each generated line while text streams in chunks. */
export function messageStream(write: (text: string) => void) {
  let pending = "";
  let lineStart = true;
  return {
    push(chunk: string) {
      for (const char of chunk) {
        if (lineStart) {
          pending += char;
          if (">>> ".startsWith(pending)) {
            if (pending === ">>> ") {
              pending = "";
              lineStart = false;
            }
            continue;
          }
          write(pending);
          lineStart = char === "\n";
          pending = "";
          continue;
        }
        write(char);
        if (char === "\n") lineStart = true;
      }
    },
  };
}

async function activeAdapterFile(config: Config, database: Database): Promise<string | undefined> {
  const runs = createRunsRepository(database);
  const active = await runs.activeAdapter();
  return active ? adapterFile(runs, path.join(config.dataDir, "adapters"), active) : undefined;
}

export function registerChatCommand(program: Command): void {
  program
    .command("chat")
    .description("talk to the twin in the terminal, with the same prompts and adapter as the bot")
    .option("--with <name>", "you are this person; the twin answers as the owner")
    .option("--as <name>", "you are the owner; the twin plays this person")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .option("--adapter <gguf>", "LoRA adapter GGUF (default: TWIN_ADAPTER)")
    .action(
      async (options: { with?: string; as?: string; model?: string; adapter?: string }, command: Command) => {
        if (Boolean(options.with) === Boolean(options.as)) {
          throw new Error(
            "give exactly one of --with <name> (you play them) or --as <name> (the twin plays them)",
          );
        }
        const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
        const settings = config.inference;
        const { context, modelPath, activeAdapter } = await withDatabase(config, async (database) => ({
          modelPath: await resolveModelPath(config, database, options.model),
          // Without --adapter or TWIN_ADAPTER: the adapter the bot serves (the database's active one).
          activeAdapter: await activeAdapterFile(config, database),
          context: await loadConversationContext(
            database,
            (options.with ?? options.as) as string,
            config.timeZone ?? machineTimeZone(),
          ),
        }));
        const { engine, adapter } = await openEngine(config, modelPath, {
          sequences: 1,
          adapterPath: options.adapter ?? settings.adapter ?? activeAdapter,
        });
        const conversations = new Conversations(engine);
        const you = options.with ? context.person.name : context.owner.name;
        const twin = options.with ? context.owner.name : context.person.name;
        const input = readline.createInterface({ input: process.stdin, output: process.stdout });
        process.stdout.write(
          `You are ${you}; the twin is ${twin} (${context.history.length} turns of real history as context${adapter ? ", adapter on" : ""}).\n/reset starts over, /quit leaves.\n`,
        );
        const live: PromptTurn[] = [];
        // The header carries the conversation's start, as a dataset session's does: fixed, so the
        // prompt's prefix (and the sequence holding it) stays valid from turn to turn.
        let startedAt = Date.now();
        try {
          for (;;) {
            const line = await input.question(`${you}> `).catch(() => "/quit");
            if (line.trim() === "/quit") break;
            if (line.trim() === "/reset") {
              live.length = 0;
              startedAt = Date.now();
              await conversations.reset("terminal");
              process.stdout.write("(new conversation)\n");
              continue;
            }
            if (!line.trim()) continue;
            const last = live.at(-1);
            if (last?.speaker === you) last.messages.push(line);
            else live.push({ speaker: you, messages: [line] });
            const prompt = buildPrompt({
              header: headerLine(
                { id: context.person.id ?? 0, type: "personal_chat", title: null },
                [context.person.name, context.owner.name],
                startedAt,
                context.timeZone,
              ),
              history: context.history,
              live,
              replyAs: twin,
              maxTokens: settings.contextSize - settings.maxReplyTokens,
              countTokens: engine.countTokens,
            });
            process.stdout.write(`${twin}: `);
            const stream = messageStream((text) => process.stdout.write(text.replace(/\n/g, `\n${twin}: `)));
            const reply = await conversations.reply("terminal", prompt, adapter, {
              onText: (t) => stream.push(t),
            });
            process.stdout.write("\n");
            live.push({ speaker: twin, messages: reply.messages });
          }
        } finally {
          input.close();
          await engine.dispose();
        }
      },
    );
}
