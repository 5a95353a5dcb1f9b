// The example processor: loads one row per day of the month (weekday, ISO week, weekend,
// day of year) into public.example_calendar_days through load_example_calendar_month,
// which upserts (a repeated month never duplicates a day) and is fenced by the claim
// token (a worker that lost its claim writes nothing).

import type { SupabaseClient } from "@supabase/supabase-js";
import { BackfillRpcError } from "../../_shared/backfill_client.ts";
import { NonRetryableError, type Processor } from "../worker.ts";

export interface CalendarDay {
  day: string;
  weekday: number; // ISO: Monday 1 … Sunday 7
  isoWeek: number;
  isWeekend: boolean;
  dayOfYear: number;
}

export function daysOfMonth(month: string): CalendarDay[] {
  const first = new Date(`${month}T00:00:00Z`);
  const [year, monthIndex] = [first.getUTCFullYear(), first.getUTCMonth()];
  const length = new Date(Date.UTC(year, monthIndex + 1, 0)).getUTCDate();
  const days: CalendarDay[] = [];
  for (let dayOfMonth = 1; dayOfMonth <= length; dayOfMonth++) {
    const d = new Date(Date.UTC(year, monthIndex, dayOfMonth));
    const weekday = d.getUTCDay() || 7;
    const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
    // The ISO week is that of the week's Thursday.
    const thursday = new Date(d);
    thursday.setUTCDate(d.getUTCDate() + 4 - weekday);
    const thursdayYearStart = Date.UTC(thursday.getUTCFullYear(), 0, 1);
    days.push({
      day: d.toISOString().slice(0, 10),
      weekday,
      isoWeek: Math.ceil(((thursday.getTime() - thursdayYearStart) / 86_400_000 + 1) / 7),
      isWeekend: weekday >= 6,
      dayOfYear: (d.getTime() - yearStart) / 86_400_000 + 1,
    });
  }
  return days;
}

/** `delayMs`: time a month takes, so the demo has something to watch. */
export function calendarProcessor(
  supabase: Pick<SupabaseClient, "rpc">,
  { delayMs = 0 }: { delayMs?: number } = {},
): Processor {
  return async ({ month, claimToken, signal }) => {
    const days = daysOfMonth(month);
    if (delayMs > 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, delayMs * (0.5 + Math.random()));
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(signal.reason);
        }, { once: true });
      });
    }
    const { data, error } = await supabase.rpc("load_example_calendar_month", {
      p_claim_token: claimToken,
      p_days: days,
    });
    if (error) {
      const rpcError = new BackfillRpcError(
        "load_example_calendar_month",
        error.code,
        error.message,
      );
      throw error.code === "22023" ? new NonRetryableError(rpcError.message) : rpcError;
    }
    if (data === null) throw new Error("claim lost before the month was written");
    return { rows: data as number, firstDay: days[0].day, lastDay: days.at(-1)!.day };
  };
}
