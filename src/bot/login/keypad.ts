import { InlineKeyboard } from "grammy";

/** The callback the login conversation resumes on once a code is typed: it carries no digit. */
export const CODE_SUBMITTED = "kp:submitted";

/** A key pressed on the keypad: a digit, "del" (⌫) or "ok" (✓). */
export const KEYPAD_PRESS = /^kp:(\d|del|ok)$/;

/** The inline keypad the login code is typed on: it never travels as a message. */
export function keypad(): InlineKeyboard {
  return InlineKeyboard.from(
    [
      ["1", "2", "3"],
      ["4", "5", "6"],
      ["7", "8", "9"],
      ["⌫", "0", "✓"],
    ].map((row) =>
      row.map((key) => InlineKeyboard.text(key, `kp:${key === "⌫" ? "del" : key === "✓" ? "ok" : key}`)),
    ),
  );
}
