import { type Conversation, createConversation } from "@grammyjs/conversations";
import { type Context, InlineKeyboard } from "grammy";
import type { Outcome } from "../../userbot/logins.ts";
import type { Userbot } from "../../userbot/setup.ts";
import type { BotContext } from "../context.ts";
import type { BotServices } from "../services.ts";
import { CODE_SUBMITTED, keypad } from "./keypad.ts";
import { QR_DONE, showQr } from "./qr-login.ts";

/** The conversation's id, as its state is stored under: `ctx.conversation.enter(LOGIN_CONVERSATION)`. */
export const LOGIN_CONVERSATION = "login";
const PASSWORD_CANCEL = "login:cancel";

function outcomeText(outcome: Outcome): string {
  switch (outcome.status) {
    case "code_invalid":
      return "That code is wrong. Type it again:";
    case "code_expired":
      return "That code expired; Telegram is sending a new one.";
    case "password_invalid":
      return "That password is wrong. Send it again (I delete it right away), or press Cancel.";
    case "flood_wait":
      return `Telegram asks to wait ${outcome.seconds} s before trying again. /export later.`;
    case "phone_invalid":
      return "Telegram does not know that phone number. Send it with the country code, e.g. +44…";
    case "failed":
      return `The login failed: ${outcome.reason}. /export to try again.`;
    default:
      return "";
  }
}

/**
 * Logs the userbot in as the owner: a phone number then the code (on the keypad) and the 2FA
 * password, or a QR code; then `onLoggedIn` with the chat. The code and the password themselves
 * never pass through here: loginSecrets takes them first (login-secrets.ts).
 */
export function loginConversation(
  services: Pick<BotServices, "api" | "log">,
  userbot: Userbot,
  onLoggedIn: (chatId: number) => unknown,
) {
  async function login(conversation: Conversation<BotContext, Context>, ctx: Context) {
    const ownerId = ctx.from?.id as number;
    await ctx.reply(
      "To pull your history I log in as you (a “userbot”). Send your phone number with the country code, or share your contact — or log in with a QR code. /cancel stops.",
      { reply_markup: new InlineKeyboard().text("Log in with a QR code", "login:qr") },
    );
    let outcome: Outcome;
    for (;;) {
      const answer = await conversation.waitFor(["message:text", "message:contact", "callback_query:data"], {
        otherwise: (other) => other.reply("Send your phone number, or /cancel."),
      });
      if (answer.callbackQuery?.data === "login:qr") {
        await answer.answerCallbackQuery();
        outcome = await conversation.external(() =>
          showQr(services, userbot, ownerId, answer.chat?.id as number),
        );
        while (outcome.status === "qr_waiting") {
          const done = await conversation.waitForCallbackQuery(QR_DONE, {
            otherwise: (other) => other.reply("Scan the QR code, then press Done — or /cancel."),
          });
          await done.answerCallbackQuery();
          outcome = await conversation.external(() => userbot.logins.checkQr(ownerId));
          if (outcome.status === "qr_waiting") {
            await ctx.reply("Not scanned yet: scan the code above with your phone, then press Done.");
          }
        }
        break;
      }
      if (!answer.msg) continue;
      const phone = (answer.msg.contact?.phone_number ?? answer.msg.text ?? "").replace(/[\s()-]/g, "");
      if (!/^\+?\d{7,15}$/.test(phone)) {
        await answer.reply("That does not look like a phone number. Send it like +441234567890.");
        continue;
      }
      outcome = await conversation.external(() =>
        userbot.logins.start(ownerId, phone.startsWith("+") ? phone : `+${phone}`),
      );
      if (outcome.status === "code_sent") break;
      await answer.reply(outcomeText(outcome));
      if (outcome.status !== "phone_invalid") return;
    }
    let prompt =
      "Telegram sent you a login code. Type it on these buttons — never as a message (Telegram would then block it):";
    while (outcome.status === "code_sent" || outcome.status === "code_invalid") {
      await ctx.reply(prompt, { reply_markup: keypad() });
      await conversation.waitForCallbackQuery(CODE_SUBMITTED, {
        otherwise: (other) => other.reply("Type the code on the buttons above, or /cancel."),
      });
      outcome = await conversation.external(() => userbot.logins.outcome(ownerId));
      if (outcome.status === "code_invalid") {
        prompt = outcomeText(outcome);
        continue;
      }
      if (outcome.status === "code_expired") {
        await ctx.reply(outcomeText(outcome));
        outcome = await conversation.external(() => userbot.logins.resend(ownerId));
        if (outcome.status !== "code_sent") break;
        prompt = "Type the new code:";
        continue;
      }
      break;
    }
    // Any text is taken as the password (even "/cancel"), so leaving is a button here.
    const cancel = new InlineKeyboard().text("Cancel", PASSWORD_CANCEL);
    while (outcome.status === "password_needed" || outcome.status === "password_invalid") {
      await ctx.reply(
        outcome.status === "password_needed"
          ? `Two-step verification is on. Send your password${outcome.hint ? ` (hint: ${outcome.hint})` : ""}; I delete your message as soon as I read it.`
          : outcomeText(outcome),
        { reply_markup: cancel },
      );
      const answer = await conversation.waitFor(["message:text", "callback_query:data"], {
        otherwise: (other) => other.reply("Send your password, or press Cancel."),
      });
      if (answer.callbackQuery) {
        await answer.answerCallbackQuery();
        if (answer.callbackQuery.data !== PASSWORD_CANCEL) continue;
        await conversation.external(() => userbot.logins.cancel(ownerId));
        await answer.reply("Cancelled: the userbot is not logged in. /export to start again.");
        return;
      }
      outcome = await conversation.external(() => userbot.logins.outcome(ownerId));
    }
    if (outcome.status !== "logged_in") {
      await ctx.reply(outcomeText(outcome));
      return;
    }
    await ctx.reply(
      "Logged in. Your session is stored encrypted; /logout ends it. Pulling your history now.",
    );
    await conversation.external(() => onLoggedIn(ctx.chat?.id as number));
  }

  return createConversation(login, LOGIN_CONVERSATION);
}
