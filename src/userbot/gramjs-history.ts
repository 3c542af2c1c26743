import { Api, TelegramClient } from "telegram";
import { StringSession } from "telegram/sessions/index.js";
import type { TelegramHistoryClient } from "./pull.ts";

const big = (n: number) => BigInt(n) as never;

/**
 * The pull's client on a real gramjs connection (a logged-in session). getHistory pages forward
 * in time: `offset_id` just above the cursor with `add_offset = -limit` asks for the `limit`
 * messages after it, and `min_id` keeps anything older out. Not exercised against Telegram's
 * servers in tests (there are none here); the pull's logic is, through the same interface.
 */
export async function connectHistoryClient(
  apiId: number,
  apiHash: string,
  session: string,
): Promise<TelegramHistoryClient & { disconnect(): Promise<void> }> {
  // floodSleepThreshold 0: gramjs sleeps through no flood wait itself; every FloodWaitError reaches
  // the pull, which counts it, sleeps short ones and pauses for long ones (see requests.ts).
  const client = new TelegramClient(new StringSession(session), apiId, apiHash, {
    connectionRetries: 3,
    floodSleepThreshold: 0,
  });
  client.setLogLevel("none" as never); // its logs may carry auth details
  await client.connect();
  // While a takeout session runs, every request goes through it (account.initTakeoutSession).
  let takeoutId: Api.long | undefined;
  const invoke = <R extends Api.AnyRequest>(query: R): Promise<R["__response"]> =>
    takeoutId === undefined
      ? client.invoke(query)
      : (client.invoke(new Api.InvokeWithTakeout({ takeoutId, query }) as never) as Promise<R["__response"]>);
  return {
    startTakeout: async () => {
      const takeout = await client.invoke(
        new Api.account.InitTakeoutSession({
          messageUsers: true,
          messageChats: true,
          messageMegagroups: true,
          messageChannels: true,
          files: false,
        }),
      );
      takeoutId = takeout.id;
    },
    finishTakeout: async (success) => {
      if (takeoutId === undefined) return;
      await invoke(new Api.account.FinishTakeoutSession({ success }));
      takeoutId = undefined;
    },
    dialogs: (page, limit) =>
      invoke(
        new Api.messages.GetDialogs({
          offsetDate: page.offsetDate,
          offsetId: page.offsetId,
          offsetPeer: page.offsetPeer,
          limit,
          hash: big(0),
        }),
      ),
    history: (peer, afterId, limit) =>
      invoke(
        new Api.messages.GetHistory({
          peer,
          offsetId: afterId + 1,
          offsetDate: 0,
          addOffset: -limit,
          limit,
          maxId: 0,
          minId: afterId,
          hash: big(0),
        }),
      ),
    disconnect: async () => {
      await client.disconnect();
    },
  };
}
