import { Api, TelegramClient } from "telegram";
import { RPCError } from "telegram/errors/index.js";
import { computeCheck } from "telegram/Password.js";
import { StringSession } from "telegram/sessions/index.js";

/**
 * Logging the userbot in, step by step: the few MTProto calls a login needs, behind an interface
 * so the bot's login flow runs against a scripted auth layer in tests. Errors come back as
 * gramjs `RPCError`s (PHONE_CODE_INVALID, PHONE_CODE_EXPIRED, PASSWORD_HASH_INVALID, FLOOD_WAIT_n…).
 */
export interface AuthClient {
  sendCode(phone: string): Promise<{ phoneCodeHash: string; codeLength: number }>;
  /** "password" when two-step verification is on. */
  signIn(phone: string, phoneCodeHash: string, code: string): Promise<"ok" | "password">;
  passwordHint(): Promise<string | undefined>;
  /** Checks the 2FA password by SRP: the password itself never leaves this machine. */
  checkPassword(password: string): Promise<void>;
  /**
   * QR login: a fresh token to show as a QR code (`tg://login?token=…`) while no phone has
   * accepted one, "ok" once one has, "password" when two-step verification is on.
   */
  qrLogin(): Promise<{ url: string; expiresAt: number } | "ok" | "password">;
  /** The session string: a full credential, sealed before it is stored. */
  session(): string;
  logOut(): Promise<void>;
  disconnect(): Promise<void>;
}

export function rpcMessage(error: unknown): string | undefined {
  return error instanceof RPCError ? error.errorMessage : undefined;
}

/** The real thing: a gramjs client on a fresh StringSession (or a stored one, to log it out). */
export class GramjsAuthClient implements AuthClient {
  private readonly client: TelegramClient;
  private connected = false;

  constructor(
    private readonly apiId: number,
    private readonly apiHash: string,
    session = "",
  ) {
    // floodSleepThreshold 0: a flood wait during login reaches the owner as a message, never a silent sleep.
    this.client = new TelegramClient(new StringSession(session), apiId, apiHash, {
      connectionRetries: 3,
      floodSleepThreshold: 0,
    });
    this.client.setLogLevel("none" as never); // its logs may carry auth details
  }

  private async ready(): Promise<TelegramClient> {
    if (!this.connected) {
      await this.client.connect();
      this.connected = true;
    }
    return this.client;
  }

  async sendCode(phone: string) {
    const client = await this.ready();
    const sent = await client.invoke(
      new Api.auth.SendCode({
        phoneNumber: phone,
        apiId: this.apiId,
        apiHash: this.apiHash,
        settings: new Api.CodeSettings({}),
      }),
    );
    if (!(sent instanceof Api.auth.SentCode))
      throw new Error("Telegram answered the code request unexpectedly");
    const type = sent.type as { length?: number };
    return { phoneCodeHash: sent.phoneCodeHash, codeLength: type.length ?? 5 };
  }

  async signIn(phone: string, phoneCodeHash: string, code: string) {
    const client = await this.ready();
    try {
      await client.invoke(new Api.auth.SignIn({ phoneNumber: phone, phoneCodeHash, phoneCode: code }));
      return "ok" as const;
    } catch (error) {
      if (rpcMessage(error) === "SESSION_PASSWORD_NEEDED") return "password" as const;
      throw error;
    }
  }

  async passwordHint() {
    const client = await this.ready();
    return (await client.invoke(new Api.account.GetPassword())).hint;
  }

  async checkPassword(password: string) {
    const client = await this.ready();
    const info = await client.invoke(new Api.account.GetPassword());
    await client.invoke(new Api.auth.CheckPassword({ password: await computeCheck(info, password) }));
  }

  async qrLogin() {
    const client = await this.ready();
    try {
      let result = await client.invoke(
        new Api.auth.ExportLoginToken({ apiId: this.apiId, apiHash: this.apiHash, exceptIds: [] }),
      );
      if (result instanceof Api.auth.LoginTokenMigrateTo) {
        // The account lives on another data centre: follow it there and import the token.
        await (client as unknown as { _switchDC(dc: number): Promise<void> })._switchDC(result.dcId);
        result = await client.invoke(new Api.auth.ImportLoginToken({ token: result.token }));
      }
      if (result instanceof Api.auth.LoginToken) {
        return {
          url: `tg://login?token=${Buffer.from(result.token).toString("base64url")}`,
          expiresAt: result.expires * 1000,
        };
      }
      return "ok" as const;
    } catch (error) {
      if (rpcMessage(error) === "SESSION_PASSWORD_NEEDED") return "password" as const;
      throw error;
    }
  }

  session() {
    return (this.client.session as StringSession).save();
  }

  async logOut() {
    const client = await this.ready();
    await client.invoke(new Api.auth.LogOut());
  }

  async disconnect() {
    if (this.connected) await this.client.disconnect();
  }
}
