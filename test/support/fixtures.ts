import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** ../shared/fixtures beside the repository: real exports are read from there, never copied in. */
export const fixturesDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../shared/fixtures",
);

export const fixtures = {
  ensia: path.join(fixturesDir, "telegram/ensia_group_export.json"),
  cuda: path.join(fixturesDir, "telegram/cuda_group_export_oldformat.json"),
  irc: path.join(fixturesDir, "irc/ubuntu_irc_as_telegram_export.json"),
  reference: path.join(fixturesDir, "format/reference_session.json"),
};

/** Owners named in the fixtures' README (the two Telegram exports carry no personal_information). */
export const fixtureOwners = { ensia: "7743393957", cuda: "121569222", irc: "64232718" };

export function readJson(file: string): any {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}
