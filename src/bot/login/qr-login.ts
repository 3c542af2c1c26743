import { InlineKeyboard, InputFile } from "grammy";
import QRCode from "qrcode";
import type { Outcome } from "../../userbot/logins.ts";
import type { Userbot } from "../../userbot/setup.ts";
import type { BotServices } from "../services.ts";

/** The Done button under the QR picture; the login conversation waits for it. */
export const QR_DONE = "qr:done";
const QR_POLL_MS = 1000;
/** A QR picture is replaced this long before its token expires. */
const QR_REFRESH_MARGIN_MS = 3000;

/**
 * Sends the QR code as a picture with a Done button, and swaps the picture for a fresh one as
 * tokens expire, until the login leaves the QR step. Runs outside the conversation: the token
 * never enters its state.
 */
export async function showQr(
  services: Pick<BotServices, "api" | "log">,
  userbot: Userbot,
  ownerId: number,
  chatId: number,
): Promise<Outcome> {
  const outcome = await userbot.logins.startQr(ownerId);
  const url = userbot.logins.qrUrl(ownerId);
  if (outcome.status !== "qr_waiting" || !url) return outcome;
  const done = new InlineKeyboard().text("Done", QR_DONE);
  const caption =
    "Scan this with Telegram on your phone: Settings → Devices → Link Desktop Device. Then press Done.";
  const picture = async (link: string) =>
    new InputFile(await QRCode.toBuffer(link, { width: 512 }), "login.png");
  const sent = await services.api.sendPhoto(chatId, await picture(url), { caption, reply_markup: done });
  let shown = url;
  let expiresAt = outcome.expiresAt;
  let busy = false;
  const refresher = setInterval(async () => {
    if (userbot.logins.stage(ownerId) !== "qr") return clearInterval(refresher);
    if (busy || Date.now() < expiresAt - QR_REFRESH_MARGIN_MS) return;
    busy = true;
    const next = await userbot.logins.checkQr(ownerId).finally(() => {
      busy = false;
    });
    const link = userbot.logins.qrUrl(ownerId);
    if (next.status !== "qr_waiting" || !link || link === shown) return;
    shown = link;
    expiresAt = next.expiresAt;
    await services.api
      .editMessageMedia(
        chatId,
        sent.message_id,
        { type: "photo", media: await picture(link), caption },
        { reply_markup: done },
      )
      .catch((error) => services.log.error("refreshing the login QR code", error));
  }, QR_POLL_MS);
  // The timer alone must not keep the process alive.
  refresher.unref();
  return outcome;
}
