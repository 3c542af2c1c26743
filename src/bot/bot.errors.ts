import { TwinError } from "../errors.ts";

/** The bot cannot start with this configuration (no token, no owner). */
export class BotConfigError extends TwinError {}

/** The Bot API refused the token (401): it is wrong or was revoked. Never retried. */
export class BotTokenRefusedError extends TwinError {}

/** The Bot API did not answer getMe within the start-up bound (TWIN_BOT_CONNECT_S), or answered as no Bot API does. */
export class BotApiUnreachableError extends TwinError {}

/** Long polling stopped on its own (token revoked, another process polling with the token): the bot hears nothing more. */
export class BotPollingError extends TwinError {}
