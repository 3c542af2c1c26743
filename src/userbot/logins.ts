import { FloodWaitError } from "telegram/errors/index.js";
import { type AuthClient, rpcMessage } from "./auth.ts";

/**
 * Logins in progress, one per owner, kept in this process — never in conversation state, which
 * PostgreSQL stores with every update it waited for. The code (typed on an inline keypad) and the
 * 2FA password pass through here only; what the conversation learns is an `Outcome`: serialisable,
 * and free of secrets.
 */

export type Outcome =
  | { status: "code_sent"; codeLength: number }
  /** QR login waits for a phone to scan the code; `expiresAt` says when the picture is stale. */
  | { status: "qr_waiting"; expiresAt: number }
  | { status: "logged_in" }
  | { status: "password_needed"; hint: string | undefined }
  | { status: "code_invalid" }
  | { status: "code_expired" }
  | { status: "password_invalid" }
  | { status: "flood_wait"; seconds: number }
  | { status: "phone_invalid" }
  | { status: "failed"; reason: string };

type Stage = "code" | "qr" | "password" | "done";

type Login = {
  client: AuthClient;
  /** The QR login's current `tg://login` URL (kept here: it never goes into conversation state). */
  qrUrl?: string | undefined;
  phone: string;
  phoneCodeHash: string;
  codeLength: number;
  digits: string;
  stage: Stage;
  outcome: Outcome;
};

const KNOWN: Record<string, Outcome> = {
  PHONE_CODE_INVALID: { status: "code_invalid" },
  PHONE_CODE_EMPTY: { status: "code_invalid" },
  PHONE_CODE_EXPIRED: { status: "code_expired" },
  PASSWORD_HASH_INVALID: { status: "password_invalid" },
  PHONE_NUMBER_INVALID: { status: "phone_invalid" },
  PHONE_NUMBER_BANNED: { status: "failed", reason: "Telegram says this number is banned" },
};

function outcomeOf(error: unknown): Outcome {
  if (error instanceof FloodWaitError) return { status: "flood_wait", seconds: error.seconds };
  const known = KNOWN[rpcMessage(error) ?? ""];
  // Only Telegram's error name goes back: never a message that could quote what was sent.
  return known ?? { status: "failed", reason: rpcMessage(error) ?? "Telegram could not be reached" };
}

export class Logins {
  private readonly logins = new Map<number, Login>();

  constructor(
    private readonly connect: () => AuthClient,
    /** Receives the session string once logged in: it seals and stores it. */
    private readonly onSession: (ownerId: number, session: string) => Promise<void>,
  ) {}

  stage(ownerId: number): Stage | undefined {
    return this.logins.get(ownerId)?.stage;
  }

  outcome(ownerId: number): Outcome {
    return (
      this.logins.get(ownerId)?.outcome ?? { status: "failed", reason: "no login in progress: /export again" }
    );
  }

  /** Sends the login code to `phone`. */
  async start(ownerId: number, phone: string): Promise<Outcome> {
    await this.cancel(ownerId);
    const client = this.connect();
    try {
      const sent = await client.sendCode(phone);
      const outcome: Outcome = { status: "code_sent", codeLength: sent.codeLength };
      this.logins.set(ownerId, { client, phone, ...sent, digits: "", stage: "code", outcome });
      return outcome;
    } catch (error) {
      await client.disconnect().catch(() => undefined);
      return outcomeOf(error);
    }
  }

  /** Starts a QR login; the picture's URL comes from `qrUrl`. */
  async startQr(ownerId: number): Promise<Outcome> {
    await this.cancel(ownerId);
    const client = this.connect();
    this.logins.set(ownerId, {
      client,
      phone: "",
      phoneCodeHash: "",
      codeLength: 0,
      digits: "",
      stage: "qr",
      outcome: { status: "qr_waiting", expiresAt: 0 },
    });
    return this.checkQr(ownerId);
  }

  /** Whether a phone accepted the QR code yet; while not, a token that is still valid. */
  async checkQr(ownerId: number): Promise<Outcome> {
    const login = this.logins.get(ownerId);
    if (login?.stage !== "qr") return this.outcome(ownerId);
    try {
      const result = await login.client.qrLogin();
      if (result === "ok") login.outcome = await this.finish(ownerId, login);
      else if (result === "password") {
        login.stage = "password";
        login.outcome = {
          status: "password_needed",
          hint: await login.client.passwordHint().catch(() => undefined),
        };
      } else {
        login.qrUrl = result.url;
        login.outcome = { status: "qr_waiting", expiresAt: result.expiresAt };
      }
    } catch (error) {
      login.outcome = outcomeOf(error);
    }
    return login.outcome;
  }

  qrUrl(ownerId: number): string | undefined {
    const login = this.logins.get(ownerId);
    return login?.stage === "qr" ? login.qrUrl : undefined;
  }

  /** A fresh code after the last one expired. */
  async resend(ownerId: number): Promise<Outcome> {
    const login = this.logins.get(ownerId);
    if (!login) return this.outcome(ownerId);
    try {
      const sent = await login.client.sendCode(login.phone);
      Object.assign(login, sent, { digits: "", stage: "code" as Stage });
      login.outcome = { status: "code_sent", codeLength: sent.codeLength };
    } catch (error) {
      login.outcome = outcomeOf(error);
    }
    return login.outcome;
  }

  /** A keypad press: a digit, "del" or "clear"; returns what to show (dots, never the digits). */
  press(ownerId: number, key: string): string {
    const login = this.logins.get(ownerId);
    if (login?.stage !== "code") return "";
    if (key === "del") login.digits = login.digits.slice(0, -1);
    else if (key === "clear") login.digits = "";
    else if (/^\d$/.test(key) && login.digits.length < 12) login.digits += key;
    return "•".repeat(login.digits.length);
  }

  async submitCode(ownerId: number): Promise<Outcome> {
    const login = this.logins.get(ownerId);
    if (login?.stage !== "code") return this.outcome(ownerId);
    const code = login.digits;
    login.digits = "";
    try {
      const result = await login.client.signIn(login.phone, login.phoneCodeHash, code);
      if (result === "password") {
        login.stage = "password";
        login.outcome = {
          status: "password_needed",
          hint: await login.client.passwordHint().catch(() => undefined),
        };
      } else {
        login.outcome = await this.finish(ownerId, login);
      }
    } catch (error) {
      login.outcome = outcomeOf(error);
    }
    return login.outcome;
  }

  async submitPassword(ownerId: number, password: string): Promise<Outcome> {
    const login = this.logins.get(ownerId);
    if (login?.stage !== "password") return this.outcome(ownerId);
    try {
      await login.client.checkPassword(password);
      login.outcome = await this.finish(ownerId, login);
    } catch (error) {
      login.outcome = outcomeOf(error);
    }
    return login.outcome;
  }

  async cancel(ownerId: number): Promise<void> {
    const login = this.logins.get(ownerId);
    this.logins.delete(ownerId);
    if (login && login.stage !== "done") await login.client.disconnect().catch(() => undefined);
  }

  private async finish(ownerId: number, login: Login): Promise<Outcome> {
    await this.onSession(ownerId, login.client.session());
    login.stage = "done";
    await login.client.disconnect().catch(() => undefined);
    return { status: "logged_in" };
  }
}
