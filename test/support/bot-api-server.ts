import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Message, Update, User } from "grammy/types";

/**
 * A local HTTP server that speaks the Telegram Bot API, for end-to-end tests: the bot talks to it
 * through grammY's `apiRoot` exactly as it would to api.telegram.org. Tests feed updates (long
 * polling with `getUpdates`), read every call the bot made, serve files for `getFile`, and make
 * chosen calls fail with 429 or 5xx.
 */
export type ApiCall = { method: string; params: Record<string, any>; at: number; failed?: number };

type Waiter = { offset: number; limit: number; respond: (updates: Update[]) => void };

export class BotApiServer {
  readonly calls: ApiCall[] = [];
  readonly bot: User = { id: 999_000_001, is_bot: true, first_name: "Twin", username: "twin_test_bot" };
  private readonly updates: Update[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly files = new Map<string, { path: string; content: Buffer }>();
  private readonly failures: { method: string; status: number; retryAfter?: number }[] = [];
  private nextUpdateId = 1;
  private confirmedBelow = 0;
  private nextMessageId = 1000;
  private server: http.Server | undefined;

  constructor(readonly token: string) {}

  get apiRoot(): string {
    if (!this.server) throw new Error("the Bot API server is not started");
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) =>
      // A request this server cannot read fails loudly instead of leaving the bot waiting.
      this.handle(req, res).catch((error: Error) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: false, error_code: 500, description: `test server: ${error.message}` }));
      }),
    );
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
  }

  async close(): Promise<void> {
    for (const waiter of this.waiters) waiter.respond([]);
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** The next `times` calls of `method` fail with `status` (429 carries `retry_after`). */
  fail(method: string, status: number, times = 1, retryAfter?: number): void {
    for (let i = 0; i < times; i++)
      this.failures.push({ method, status, ...(retryAfter ? { retryAfter } : {}) });
  }

  /** A file the bot can fetch with getFile and the file URL; returns its file_id. */
  addFile(content: Buffer, name: string): string {
    const id = `file-${this.files.size + 1}`;
    this.files.set(id, { path: `documents/${id}-${name}`, content });
    return id;
  }

  /** A private message from `from`; a leading /command gets its bot_command entity, as Telegram sends. */
  sendMessage(from: User, fields: Partial<Message> & { text?: string } = {}, chatId = from.id): Update {
    const text = fields.text;
    const command = text?.match(/^\/\w+/)?.[0];
    const message = {
      message_id: this.nextMessageId++,
      date: Math.floor(Date.now() / 1000),
      chat:
        chatId === from.id
          ? { id: from.id, type: "private", first_name: from.first_name }
          : { id: chatId, type: "group", title: "group" },
      from,
      ...(command ? { entities: [{ type: "bot_command", offset: 0, length: command.length }] } : {}),
      ...fields,
    } as Message;
    return this.push({ message } as Update);
  }

  pressButton(from: User, data: string, message: Message): Update {
    return this.push({
      callback_query: { id: `cb-${this.nextUpdateId}`, from, chat_instance: "1", data, message },
    } as Update);
  }

  /** Calls of `method` (optionally to one chat), successful ones only. */
  sent(method: string, chatId?: number): ApiCall[] {
    return this.calls.filter(
      (call) =>
        call.method === method && !call.failed && (chatId === undefined || call.params.chat_id === chatId),
    );
  }

  /**
   * Texts and captions the bot sent as plain text (no parse_mode, no entities) that hold a pair of
   * backticks: Telegram shows them as they are, so code must go out as entities or a parse mode.
   * Bot tests assert this is empty over everything their bot sent.
   */
  literalCode(): ApiCall[] {
    return this.calls.filter((call) => {
      const { text, caption, parse_mode, entities, caption_entities } = call.params;
      if (parse_mode) return false;
      const literal = (value: unknown, marks: unknown) =>
        typeof value === "string" && !(Array.isArray(marks) && marks.length > 0) && /`[^`]*`/.test(value);
      return literal(text, entities) || literal(caption, caption_entities);
    });
  }

  /** Waits until `predicate` holds over the calls so far. */
  async waitFor(what: string, predicate: (calls: ApiCall[]) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.calls)) {
      if (Date.now() > deadline) {
        const recent = this.calls
          .slice(-8)
          .map((c) => `${c.method} ${JSON.stringify(c.params).slice(0, 120)}`);
        throw new Error(`timed out waiting for ${what}; last calls:\n${recent.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** The message the bot sent with this message_id (for pressing its buttons). */
  messageById(id: number): Message | undefined {
    for (const call of this.calls) {
      if (
        call.method === "sendMessage" &&
        (call as ApiCall & { result?: Message }).result?.message_id === id
      ) {
        return (call as ApiCall & { result?: Message }).result;
      }
    }
    return undefined;
  }

  private push(partial: Omit<Update, "update_id">): Update {
    const update = { update_id: this.nextUpdateId++, ...partial } as Update;
    this.updates.push(update);
    for (const waiter of [...this.waiters]) {
      const ready = this.updates.filter((u) => u.update_id >= waiter.offset).slice(0, waiter.limit);
      if (ready.length > 0) waiter.respond(ready);
    }
    return update;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const filePrefix = `/file/bot${this.token}/`;
    if (url.pathname.startsWith(filePrefix)) {
      const wanted = url.pathname.slice(filePrefix.length);
      const file = [...this.files.values()].find((f) => f.path === wanted);
      if (!file) return reply(404, { ok: false, error_code: 404, description: "Not Found" });
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(file.content);
      return;
    }
    const match = url.pathname.match(/^\/bot([^/]+)\/(\w+)$/);
    if (!match || match[1] !== this.token) {
      return reply(401, { ok: false, error_code: 401, description: "Unauthorized" });
    }
    const method = match[2] as string;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const params = parseBody(Buffer.concat(chunks), String(req.headers["content-type"] ?? ""));
    const call: ApiCall & { result?: unknown } = { method, params, at: Date.now() };
    this.calls.push(call);

    const failure = this.failures.findIndex((f) => f.method === method);
    if (failure >= 0) {
      const { status, retryAfter } = this.failures.splice(failure, 1)[0] as {
        status: number;
        retryAfter?: number;
      };
      call.failed = status;
      return reply(status, {
        ok: false,
        error_code: status,
        description:
          status === 429 ? `Too Many Requests: retry after ${retryAfter ?? 1}` : "Internal Server Error",
        ...(status === 429 ? { parameters: { retry_after: retryAfter ?? 1 } } : {}),
      });
    }
    if (method === "getUpdates") {
      // As Telegram does: an offset confirms every update below it, and they are never sent again.
      this.confirmedBelow = Math.max(this.confirmedBelow, Number(params.offset ?? 0));
      const offset = this.confirmedBelow;
      const limit = Number(params.limit ?? 100);
      const ready = this.updates.filter((u) => u.update_id >= offset).slice(0, limit);
      if (ready.length > 0 || !params.timeout) return reply(200, { ok: true, result: ready });
      const waiter: Waiter = {
        offset,
        limit,
        respond: (updates) => {
          this.waiters.delete(waiter);
          clearTimeout(timer);
          if (!res.writableEnded) reply(200, { ok: true, result: updates });
        },
      };
      const timer = setTimeout(() => waiter.respond([]), Number(params.timeout) * 1000);
      this.waiters.add(waiter);
      req.on("close", () => {
        this.waiters.delete(waiter);
        clearTimeout(timer);
      });
      return;
    }
    const result = this.result(method, params);
    if (result === undefined)
      return reply(404, { ok: false, error_code: 404, description: "Not Found: method not found" });
    call.result = result;
    reply(200, { ok: true, result });
  }

  private result(method: string, params: Record<string, any>): unknown {
    const chat = { id: params.chat_id, type: params.chat_id > 0 ? "private" : "group" };
    switch (method) {
      case "getMe":
        return {
          ...this.bot,
          can_join_groups: true,
          can_read_all_group_messages: false,
          supports_inline_queries: false,
        };
      case "sendMessage":
        return {
          message_id: this.nextMessageId++,
          date: Math.floor(Date.now() / 1000),
          chat,
          from: this.bot,
          text: params.text,
          ...(params.reply_markup ? { reply_markup: params.reply_markup } : {}),
        };
      case "sendPhoto":
        return {
          message_id: this.nextMessageId++,
          date: Math.floor(Date.now() / 1000),
          chat,
          from: this.bot,
          photo: [{ file_id: `photo-${this.nextMessageId}`, file_unique_id: "p", width: 512, height: 512 }],
          ...(params.caption ? { caption: params.caption } : {}),
          ...(params.reply_markup ? { reply_markup: params.reply_markup } : {}),
        };
      case "sendMediaGroup":
        return (params.media as unknown[]).map(() => ({
          message_id: this.nextMessageId++,
          date: Math.floor(Date.now() / 1000),
          chat,
          from: this.bot,
          photo: [{ file_id: `photo-${this.nextMessageId}`, file_unique_id: "p", width: 512, height: 512 }],
        }));
      case "sendDocument":
        return {
          message_id: this.nextMessageId++,
          date: Math.floor(Date.now() / 1000),
          chat,
          from: this.bot,
          document: { file_id: `doc-${this.nextMessageId}`, file_unique_id: "d", file_name: "report.md" },
        };
      case "editMessageMedia":
        return { message_id: params.message_id, date: Math.floor(Date.now() / 1000), chat, from: this.bot };
      case "editMessageText":
        return {
          message_id: params.message_id,
          date: Math.floor(Date.now() / 1000),
          chat,
          from: this.bot,
          text: params.text,
        };
      case "getFile": {
        const file = this.files.get(params.file_id);
        if (!file) return undefined;
        return {
          file_id: params.file_id,
          file_unique_id: params.file_id,
          file_size: file.content.length,
          file_path: file.path,
        };
      }
      case "getMyName":
        return { name: "Twin" };
      case "sendChatAction":
      case "answerCallbackQuery":
      case "setMyCommands":
      case "deleteMyCommands":
      case "setMyName":
      case "setMyDescription":
      case "setMyShortDescription":
      case "deleteWebhook":
      case "setWebhook":
      case "deleteMessage":
        return true;
      default:
        return undefined;
    }
  }
}

/**
 * A request's parameters: JSON, or multipart form data when the bot uploads a file (its JSON
 * fields — reply_markup, media — parsed, a file kept as its size and bytes). The form is split by hand:
 * undici's parser refuses grammY's stream-built bodies.
 */
function parseBody(body: Buffer, contentType: string): Record<string, any> {
  if (body.length === 0) return {};
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!contentType.startsWith("multipart/form-data") || !boundary) return JSON.parse(body.toString("utf8"));
  const params: Record<string, any> = {};
  for (const part of body.toString("latin1").split(`--${boundary[1] ?? boundary[2]}`)) {
    const split = part.indexOf("\r\n\r\n");
    if (split < 0) continue;
    const head = part.slice(0, split);
    const content = part.slice(split + 4).replace(/\r\n$/, "");
    const name = /name="([^"]+)"/.exec(head)?.[1];
    if (!name) continue;
    if (/filename=/.test(head)) {
      const bytes = Buffer.from(content, "latin1");
      params[name] = { uploaded: bytes.length, bytes };
      continue;
    }
    const value = Buffer.from(content, "latin1").toString("utf8");
    params[name] = /^[[{]/.test(value) ? JSON.parse(value) : /^-?\d+$/.test(value) ? Number(value) : value;
  }
  // A file sent as "attach://<part>" (and inside media objects) is that part.
  const attached = (value: unknown): unknown =>
    typeof value === "string" && value.startsWith("attach://") ? params[value.slice(9)] : value;
  const withMedia = (value: any): unknown =>
    value && typeof value === "object" && "media" in value
      ? { ...value, media: attached(value.media) }
      : attached(value);
  for (const [key, value] of Object.entries(params)) {
    params[key] = Array.isArray(value) ? value.map(withMedia) : withMedia(value);
  }
  return params;
}
