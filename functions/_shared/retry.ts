// Recording an outcome is worth a few tries: the work is done, and a database that is
// restarting is back within seconds. Only failures that may pass are retried; a
// refusal (bad argument, permission) is final. complete and fail are safe to repeat
// with the same token, so a try that reached the database before failing does no harm.

import { BackfillRpcError } from "./backfill_client.ts";

/** SQLSTATE classes of a refusal that no retry can change: data, privilege, syntax. */
const FINAL = /^(22|23|42|P0|PGRST1|PGRST2)/;

export async function persistently<T>(
  call: () => Promise<T>,
  { tries = 6, firstDelayMs = 250 } = {},
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await call();
    } catch (e) {
      const final = e instanceof BackfillRpcError && FINAL.test(e.code);
      if (final || attempt >= tries) throw e;
      await new Promise((r) => setTimeout(r, firstDelayMs * 2 ** (attempt - 1)));
    }
  }
}
