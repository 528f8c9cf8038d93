/**
 * Business hours of a channel: when the team is at work, in the channel's own time zone.
 *
 * Semantics (wall clock). An instant is open iff the local wall-clock reading in `timeZone` (local date,
 * weekday, minutes since local midnight `m`) satisfies:
 *   - the local date is not one of `closedDates`, AND
 *   - some interval of that weekday has `start <= m < end` (an interval with `end > start`) or `start <= m`
 *     (an interval with `end <= start`, which crosses midnight), OR some crossing interval of the PREVIOUS
 *     weekday has `m < end` (its tail after midnight).
 * A closed date closes its whole local day, tails of the previous evening included; the tail of an interval
 * that started on a closed date is open on the next (ordinary) date, because that date is not closed.
 *
 * This is well defined for every instant, DST nights included, because every instant has exactly one wall-clock
 * reading: on a spring-forward night an interval starting at a wall time that does not exist (02:30 in Berlin)
 * opens at the transition instant, when the clock jumps to 03:00; on a fall-back night the repeated hour is
 * judged by what the clock shows, so an interval 01:00–03:00 lasts three real hours.
 *
 * Implementation: openness is a function of the local reading, which within one stretch of constant UTC offset
 * is the instant plus that offset. The zone's offset changes (DST transitions) are found once per zone and UTC
 * year by sampling the offset daily and bisecting each change to the second, then cached (they are pure data;
 * two transitions within one day are not detected, no zone has had that in decades). Searches walk these
 * constant-offset stretches and, inside each, the local days with their merged opening spans: no minute
 * stepping, a search costs microseconds once a zone's year is cached.
 */
import { IANAZone } from 'luxon';
import { z } from 'zod';

export const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** 'HH:mm' local wall times; `end` may be '24:00'; `end <= start` means the interval crosses midnight into the next day. */
export interface BusinessHoursInterval {
  start: string;
  end: string;
}

export interface BusinessHours {
  /** IANA time zone, e.g. 'Europe/Berlin'. */
  timeZone: string;
  /** Opening intervals per weekday, any number a day; a missing weekday is closed (apart from the previous day's overnight tail). */
  weekly: Partial<Record<Weekday, BusinessHoursInterval[]>>;
  /** 'YYYY-MM-DD' local dates (holidays): the whole local day is closed. */
  closedDates: string[];
}

/** How far searches look ahead: long enough for any list of holidays. */
const SEARCH_HORIZON_DAYS = 732;

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const SEARCH_HORIZON_MS = SEARCH_HORIZON_DAYS * DAY_MS;
/**
 * The most business time addBusinessTime adds (SLA targets): it walks the opening stretches one by
 * one, and with 48 one-minute intervals a day 30 days of business time are ~43,000 stretches (~0.1 s).
 */
export const MAX_BUSINESS_TIME_MS = 30 * DAY_MS;

const TIME = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

// ---------------------------------------------------------------------------------------------------------------
// Validation

const intervalSchema = z
  .object({
    start: z
      .string({ error: "start must be a time 'HH:mm'" })
      .refine((v) => TIME.test(v), { error: (iss) => `start '${String(iss.input)}' must be a time 'HH:mm' from 00:00 to 23:59` }),
    end: z.string({ error: "end must be a time 'HH:mm'" }).refine((v) => TIME.test(v) || v === '24:00', {
      error: (iss) => `end '${String(iss.input)}' must be a time 'HH:mm' from 00:00 to 24:00`,
    }),
  })
  .refine((i) => i.start !== i.end, {
    error: (iss) => {
      const i = iss.input as BusinessHoursInterval;
      return `interval ${i.start}–${i.end} is empty: start and end must differ (an end before the start crosses midnight; a whole day is 00:00–24:00)`;
    },
    path: ['end'],
  });

const weeklyShape = Object.fromEntries(WEEKDAYS.map((day) => [day, z.array(intervalSchema).optional()])) as Record<
  Weekday,
  z.ZodOptional<z.ZodArray<typeof intervalSchema>>
>;

export const businessHoursSchema: z.ZodType<BusinessHours> = z
  .object({
    timeZone: z.string({ error: 'timeZone must be an IANA time zone name' }).refine((v) => IANAZone.isValidZone(v), {
      error: (iss) => `unknown time zone '${String(iss.input)}': use an IANA name such as 'Europe/Berlin'`,
    }),
    weekly: z.strictObject(weeklyShape, {
      error: (iss) =>
        iss.code === 'unrecognized_keys'
          ? `unknown weekday ${iss.keys.map((k) => `'${k}'`).join(', ')}: use ${WEEKDAYS.join(', ')}`
          : 'weekly must map weekdays to lists of intervals',
    }),
    closedDates: z
      .array(
        z.string().refine((v) => parseLocalDate(v) !== null, {
          error: (iss) => `closed date '${String(iss.input)}' is not a calendar date 'YYYY-MM-DD'`,
        }),
      )
      .default([]),
  })
  .refine((h) => WEEKDAYS.some((day) => (h.weekly[day]?.length ?? 0) > 0), {
    error: 'business hours need at least one opening interval',
    path: ['weekly'],
  });

/** Days since 1970-01-01 of a 'YYYY-MM-DD' date, or null when it is not a real calendar date. */
function parseLocalDate(value: string): number | null {
  const match = DATE.exec(value);
  if (!match) return null;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return null;
  return Math.round(date.getTime() / DAY_MS);
}

// ---------------------------------------------------------------------------------------------------------------
// Zone offsets, cached per zone and UTC year

interface OffsetChange {
  at: number;
  offsetMs: number;
}
interface YearOffsets {
  start: number;
  offsetMs: number;
  /** Changes in (start, end of year], ascending. */
  changes: OffsetChange[];
}
interface ZoneOffsets {
  zone: IANAZone;
  years: Map<number, YearOffsets>;
}

const zoneOffsets = new Map<string, ZoneOffsets>();

function zoneOffsetsFor(timeZone: string): ZoneOffsets {
  let cached = zoneOffsets.get(timeZone);
  if (!cached) {
    const zone = IANAZone.create(timeZone);
    if (!zone.isValid) throw new RangeError(`unknown time zone '${timeZone}'`);
    cached = { zone, years: new Map() };
    zoneOffsets.set(timeZone, cached);
  }
  return cached;
}

function utcYearStart(year: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, 0, 1);
  return date.getTime();
}

function yearOffsets(zo: ZoneOffsets, year: number): YearOffsets {
  let cached = zo.years.get(year);
  if (cached) return cached;
  const offsetMs = (ts: number) => Math.round(zo.zone.offset(ts) * MINUTE_MS);
  const start = utcYearStart(year);
  const end = utcYearStart(year + 1);
  const changes: OffsetChange[] = [];
  let before = start;
  let beforeOffset = offsetMs(start);
  const startOffset = beforeOffset;
  while (before < end) {
    const after = Math.min(before + DAY_MS, end);
    const afterOffset = offsetMs(after);
    if (afterOffset !== beforeOffset) {
      // Offsets change on whole seconds: bisect (before, after] in seconds for the first one with the new offset.
      let lo = Math.floor(before / 1000);
      let hi = Math.ceil(after / 1000);
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (offsetMs(mid * 1000) === beforeOffset) lo = mid;
        else hi = mid;
      }
      changes.push({ at: hi * 1000, offsetMs: afterOffset });
    }
    before = after;
    beforeOffset = afterOffset;
  }
  cached = { start, offsetMs: startOffset, changes };
  zo.years.set(year, cached);
  return cached;
}

function offsetAt(zo: ZoneOffsets, ts: number): number {
  const year = yearOffsets(zo, new Date(ts).getUTCFullYear());
  let offset = year.offsetMs;
  for (const change of year.changes) {
    if (change.at > ts) break;
    offset = change.offsetMs;
  }
  return offset;
}

/** The offset at `ts` and the first instant after it where the offset changes (Infinity if none before `limit`). */
function offsetStretch(zo: ZoneOffsets, ts: number, limit: number): { offsetMs: number; end: number } {
  const offsetMs = offsetAt(zo, ts);
  for (let year = new Date(ts).getUTCFullYear(); ; year++) {
    const offsets = yearOffsets(zo, year);
    if (offsets.start >= limit) return { offsetMs, end: Infinity };
    for (const change of offsets.changes) {
      if (change.at > ts && change.offsetMs !== offsetMs) return { offsetMs, end: change.at };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The schedule as spans of local milliseconds per weekday

type Spans = ReadonlyArray<readonly [number, number]>;

interface Compiled {
  zone: ZoneOffsets;
  /** Per weekday (0 = Monday): open spans within the local day, [start, end) in ms since local midnight. */
  open: Spans[];
  /** The complement of `open` within the day. */
  shut: Spans[];
  /** Closed local dates as days since 1970-01-01. */
  closedDays: Set<number>;
  neverOpen: boolean;
  neverClosed: boolean;
}

const WHOLE_DAY: Spans = [[0, DAY_MS]];
const NO_SPANS: Spans = [];

function minutesOf(value: string, allow24: boolean): number {
  if (allow24 && value === '24:00') return 24 * 60;
  const match = TIME.exec(value);
  if (!match) throw new RangeError(`invalid business hours time '${value}'`);
  return Number(match[1]) * 60 + Number(match[2]);
}

function merge(spans: Array<[number, number]>): Spans {
  spans.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [s, e] of spans) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  return merged;
}

function complement(spans: Spans): Spans {
  const gaps: Array<[number, number]> = [];
  let pos = 0;
  for (const [s, e] of spans) {
    if (s > pos) gaps.push([pos, s]);
    pos = e;
  }
  if (pos < DAY_MS) gaps.push([pos, DAY_MS]);
  return gaps;
}

function compile(hours: BusinessHours): Compiled {
  const raw: Array<Array<[number, number]>> = WEEKDAYS.map(() => []);
  WEEKDAYS.forEach((day, index) => {
    for (const interval of hours.weekly[day] ?? []) {
      const start = minutesOf(interval.start, false) * MINUTE_MS;
      const end = minutesOf(interval.end, true) * MINUTE_MS;
      if (end > start) raw[index]!.push([start, end]);
      else {
        raw[index]!.push([start, DAY_MS]);
        if (end > 0) raw[(index + 1) % 7]!.push([0, end]);
      }
    }
  });
  const open = raw.map(merge);
  const closedDays = new Set<number>();
  for (const date of hours.closedDates) {
    const day = parseLocalDate(date);
    if (day === null) throw new RangeError(`invalid closed date '${date}'`);
    closedDays.add(day);
  }
  return {
    zone: zoneOffsetsFor(hours.timeZone),
    open,
    shut: open.map(complement),
    closedDays,
    neverOpen: open.every((spans) => spans.length === 0),
    neverClosed:
      closedDays.size === 0 && open.every((spans) => spans.length === 1 && spans[0]![0] === 0 && spans[0]![1] === DAY_MS),
  };
}

/** Monday-based weekday of a day number (1970-01-01 was a Thursday). */
function weekdayIndex(day: number): number {
  return (((day + 3) % 7) + 7) % 7;
}

function isOpenLocal(c: Compiled, local: number): boolean {
  const day = Math.floor(local / DAY_MS);
  if (c.closedDays.has(day)) return false;
  const inDay = local - day * DAY_MS;
  return c.open[weekdayIndex(day)]!.some(([s, e]) => s <= inDay && inDay < e);
}

/** The first local reading in [from, limit) whose openness is `wantOpen`, or null. */
function firstLocal(c: Compiled, from: number, limit: number, wantOpen: boolean): number | null {
  for (let day = Math.floor(from / DAY_MS); day * DAY_MS < limit; day++) {
    const dayStart = day * DAY_MS;
    const spans = c.closedDays.has(day) ? (wantOpen ? NO_SPANS : WHOLE_DAY) : (wantOpen ? c.open : c.shut)[weekdayIndex(day)]!;
    for (const [s, e] of spans) {
      if (dayStart + e <= from) continue;
      const found = Math.max(dayStart + s, from);
      return found < limit ? found : null;
    }
  }
  return null;
}

/** The first instant in [at, limit) whose openness is `wantOpen`, or null. */
function find(c: Compiled, at: number, wantOpen: boolean, limit: number): number | null {
  if (wantOpen ? c.neverOpen : c.neverClosed) return null;
  let cur = at;
  while (cur < limit) {
    const stretch = offsetStretch(c.zone, cur, limit);
    const end = Math.min(stretch.end, limit);
    const local = firstLocal(c, cur + stretch.offsetMs, end + stretch.offsetMs, wantOpen);
    if (local !== null) return local - stretch.offsetMs;
    cur = end;
  }
  return null;
}

function instant(at: Date, name: string): number {
  const ts = at.getTime();
  if (!Number.isFinite(ts)) throw new RangeError(`${name} is not a valid date`);
  return ts;
}

// ---------------------------------------------------------------------------------------------------------------
// API

export function isOpenAt(hours: BusinessHours, at: Date): boolean {
  const ts = instant(at, 'at');
  const c = compile(hours);
  return isOpenLocal(c, ts + offsetAt(c.zone, ts));
}

/** `at` itself when open at `at`; otherwise the first instant after it that is open; null if none within ~2 years. */
export function nextOpening(hours: BusinessHours, at: Date): Date | null {
  const ts = instant(at, 'at');
  const found = find(compile(hours), ts, true, ts + SEARCH_HORIZON_MS);
  return found === null ? null : new Date(found);
}

/** The first instant >= `at` that is closed (`at` itself when closed); null if none within ~2 years (e.g. 24/7). */
export function nextClosing(hours: BusinessHours, at: Date): Date | null {
  const ts = instant(at, 'at');
  const found = find(compile(hours), ts, false, ts + SEARCH_HORIZON_MS);
  return found === null ? null : new Date(found);
}

/**
 * The earliest instant at which `ms` of open time has elapsed since `from` (SLA deadlines): it lies in an open
 * stretch or at its closing instant. `ms` <= 0 gives `from`. Null if the hours never open again within ~2 years
 * of some point on the way. Throws a RangeError for a non-finite `ms` or negative one.
 */
export function addBusinessTime(hours: BusinessHours, from: Date, ms: number): Date | null {
  const start = instant(from, 'from');
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_BUSINESS_TIME_MS) {
    throw new RangeError(`business time to add must be between 0 and ${MAX_BUSINESS_TIME_MS} ms, got ${ms}`);
  }
  if (ms === 0) return new Date(start);
  const c = compile(hours);
  let remaining = ms;
  let cur = start;
  for (;;) {
    const open = find(c, cur, true, cur + SEARCH_HORIZON_MS);
    if (open === null) return null;
    const close = find(c, open, false, open + remaining);
    if (close === null) return new Date(open + remaining);
    remaining -= close - open;
    cur = close;
  }
}

/** Milliseconds of open time in [from, to) (first-response time reports); 0 when `to` <= `from`. */
export function businessTimeBetween(hours: BusinessHours, from: Date, to: Date): number {
  const start = instant(from, 'from');
  const end = instant(to, 'to');
  if (end <= start) return 0;
  const c = compile(hours);
  let total = 0;
  let cur = start;
  while (cur < end) {
    const open = find(c, cur, true, end);
    if (open === null) break;
    const close = find(c, open, false, end) ?? end;
    total += close - open;
    cur = close;
  }
  return total;
}

const SHORT_WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const SHORT_MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The instant on the channel's wall clock, for timer summaries: e.g. 'Mon 23 Nov 09:00 Europe/Berlin'. */
export function describeInstant(hours: BusinessHours, at: Date): string {
  const ts = instant(at, 'at');
  const local = new Date(ts + offsetAt(zoneOffsetsFor(hours.timeZone), ts));
  const hh = String(local.getUTCHours()).padStart(2, '0');
  const mm = String(local.getUTCMinutes()).padStart(2, '0');
  return `${SHORT_WEEKDAYS[local.getUTCDay()]} ${local.getUTCDate()} ${SHORT_MONTHS[local.getUTCMonth()]} ${hh}:${mm} ${hours.timeZone}`;
}
