import { Api } from "telegram";
import { RPCError } from "telegram/errors/index.js";
import type { AuthClient } from "../../src/userbot/auth.ts";

/**
 * Telegram's login, scripted for tests: the codes it "sends", two-step verification, and the
 * errors it really answers with (gramjs RPCErrors: PHONE_CODE_INVALID, PHONE_CODE_EXPIRED,
 * PASSWORD_HASH_INVALID, PHONE_NUMBER_INVALID). One state shared by every client it hands out.
 */
export class ScriptedTelegram {
  readonly codes = ["73195", "86420", "39571"];
  readonly password = "hunter2-secret-password";
  readonly session = "1BVtsOKABu4SESSION-STRING-that-logs-in-as-the-owner==";
  sent = 0;
  expireNext = false;
  /** QR login: tokens handed out, how long each lives, and whether a phone has scanned one. */
  qrTokens = 0;
  qrTtlMs = 60_000;
  qrScanned = false;
  loggedOut = false;
  signIns: string[] = [];

  client(): AuthClient {
    const state = this;
    const fail = (message: string) =>
      new RPCError(message, new Api.auth.SignIn({ phoneNumber: "", phoneCodeHash: "", phoneCode: "" }), 400);
    return {
      async sendCode(phone) {
        if (!/^\+\d{7,15}$/.test(phone)) throw fail("PHONE_NUMBER_INVALID");
        state.sent++;
        return { phoneCodeHash: `hash-${state.sent}`, codeLength: 5 };
      },
      async signIn(_phone, phoneCodeHash, code) {
        state.signIns.push(code);
        if (state.expireNext) {
          state.expireNext = false;
          throw fail("PHONE_CODE_EXPIRED");
        }
        const valid = state.codes[Number(phoneCodeHash.split("-")[1]) - 1];
        if (code !== valid) throw fail("PHONE_CODE_INVALID");
        return "password";
      },
      async qrLogin() {
        if (state.qrScanned) return "password" as const;
        state.qrTokens++;
        return {
          url: `tg://login?token=scripted-token-${state.qrTokens}`,
          expiresAt: Date.now() + state.qrTtlMs,
        };
      },
      async passwordHint() {
        return "our first pet";
      },
      async checkPassword(password) {
        if (password !== state.password) throw fail("PASSWORD_HASH_INVALID");
      },
      session() {
        return state.session;
      },
      async logOut() {
        state.loggedOut = true;
      },
      async disconnect() {},
    };
  }
}
