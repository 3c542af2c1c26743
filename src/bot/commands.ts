import type { BotCommand } from "grammy/types";

/** The owner's command list; friends see none (they just write). */
export const ownerCommands: BotCommand[] = [
  { command: "help", description: "what the twin can do, model and counts" },
  { command: "talk", description: "chat with a simulated friend" },
  { command: "stop", description: "end the simulated chat" },
  { command: "allow", description: "let someone talk to your twin" },
  { command: "revoke", description: "take someone's access back" },
  { command: "log", description: "what the twin said to a friend in your name" },
  { command: "import", description: "import a Telegram Desktop export (result.json)" },
  { command: "export", description: "pull your history live (logs a userbot in)" },
  { command: "logout", description: "log the userbot out" },
  { command: "dataset", description: "build the training set" },
  { command: "train", description: "fine-tune the model on the latest dataset" },
  { command: "model", description: "list trained adapters and switch between them" },
  { command: "eval", description: "does it sound like you? measured, with plots" },
  { command: "status", description: "history, dataset, model, running jobs" },
  { command: "forget", description: "delete stored history and conversations" },
  { command: "pause", description: "friends get an 'away' message" },
  { command: "resume", description: "answer friends again" },
  { command: "cancel", description: "leave the current step" },
];
