import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import {
  WEEKDAYS,
  addBusinessTime,
  businessHoursSchema,
  businessTimeBetween,
  isOpenAt,
  nextClosing,
  nextOpening,
  type BusinessHours,
  type BusinessHoursInterval,
  type Weekday,
} from '../../src/domain/business-hours.js';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** DST transitions of 2026/2027 (from the tz database), where the interesting instants are. Kolkata has none. */
const TRANSITIONS: Record<string, string[]> = {
  'Europe/Berlin': ['2026-03-29T01:00Z', '2026-10-25T01:00Z', '2027-03-28T01:00Z', '2027-10-31T01:00Z'],
  'America/New_York': ['2026-03-08T07:00Z', '2026-11-01T06:00Z', '2027-03-14T07:00Z', '2027-11-07T06:00Z'],
  'Australia/Sydney': ['2026-04-04T16:00Z', '2026-10-03T16:00Z', '2027-04-03T16:00Z', '2027-10-02T16:00Z'],
  'Australia/Lord_Howe': ['2026-04-04T15:00Z', '2026-10-03T15:30Z', '2027-04-03T15:00Z', '2027-10-02T15:30Z'],
  'America/Santiago': ['2026-04-05T03:00Z', '2026-09-06T04:00Z', '2027-04-04T03:00Z', '2027-09-05T04:00Z'],
  'Asia/Kolkata': [],
  'Pacific/Chatham': ['2026-04-04T14:00Z', '2026-09-26T14:00Z', '2027-04-03T14:00Z', '2027-09-25T14:00Z'],
};
const ZONES = Object.keys(TRANSITIONS);

// ---------------------------------------------------------------------------------------------------------------
// The oracle: the wall-clock definition read straight off luxon, one instant at a time.

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

function oracleIsOpen(hours: BusinessHours, ts: number): boolean {
  const wall = DateTime.fromMillis(ts, { zone: hours.timeZone });
  if (hours.closedDates.includes(wall.toISODate()!)) return false;
  const minute = wall.hour * 60 + wall.minute;
  const today = WEEKDAYS[wall.weekday - 1]!;
  const yesterday = WEEKDAYS[(wall.weekday + 5) % 7]!;
  const openToday = (hours.weekly[today] ?? []).some(({ start, end }) => {
    const [s, e] = [minutesOf(start), minutesOf(end)];
    return e > s ? s <= minute && minute < e : s <= minute;
  });
  const tailOfYesterday = (hours.weekly[yesterday] ?? []).some(({ start, end }) => {
    const [s, e] = [minutesOf(start), minutesOf(end)];
    return e <= s && minute < e;
  });
  return openToday || tailOfYesterday;
}

/**
 * Openness only changes on whole minutes in these zones (whole-minute offsets, transitions on whole minutes),
 * so `from` and every minute boundary after it stand for all of [from, to). The oracle costs ~15µs an instant,
 * so a gap is walked minute by minute for its first 12 hours and then every 10 minutes up to 3 days.
 */
function sampledInstants(from: number, to: number): number[] {
  const samples = [from];
  const firstMinute = Math.ceil((from + 1) / MINUTE) * MINUTE;
  for (let ts = firstMinute; ts < Math.min(to, from + DAY / 2); ts += MINUTE) samples.push(ts);
  for (let ts = firstMinute + DAY / 2; ts < Math.min(to, from + 3 * DAY); ts += 10 * MINUTE) samples.push(ts);
  return samples;
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries

const hhmm = (minutes: number) =>
  minutes === 1440 ? '24:00' : `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
const wallMinute = fc.oneof(
  fc.integer({ min: 0, max: 47 }).map((half) => half * 30),
  fc.integer({ min: 0, max: 1439 }),
);
const intervalArb: fc.Arbitrary<BusinessHoursInterval> = fc
  .tuple(wallMinute, fc.oneof(wallMinute, fc.constant(1440)))
  .filter(([start, end]) => start !== end)
  .map(([start, end]) => ({ start: hhmm(start), end: hhmm(end) }));
const dayArbs = Object.fromEntries(WEEKDAYS.map((day) => [day, fc.array(intervalArb, { maxLength: 3 })]));
const weeklyArb = fc
  .record(dayArbs as Record<Weekday, fc.Arbitrary<BusinessHoursInterval[]>>, { requiredKeys: [] })
  .filter((weekly) => Object.values(weekly).some((intervals) => intervals.length > 0));

const uniformInstant = fc.integer({ min: Date.UTC(2026, 0, 1), max: Date.UTC(2028, 0, 1) });
const instantArb = (zone: string) => {
  const transitions = TRANSITIONS[zone]!.map((iso) => Date.parse(iso));
  if (transitions.length === 0) return uniformInstant;
  const around = (range: number) =>
    fc
      .tuple(fc.constantFrom(...transitions), fc.integer({ min: -range, max: range }))
      .map(([transition, delta]) => transition + delta);
  return fc.oneof(
    { arbitrary: around(3 * DAY), weight: 2 },
    { arbitrary: around(3 * HOUR), weight: 1 },
    { arbitrary: uniformInstant, weight: 1 },
  );
};

interface Scenario {
  hours: BusinessHours;
  /** An instant, concentrated around DST transitions. */
  t: number;
}

/** A random schedule in a random zone, an instant, and a few holidays close to that instant. */
const scenarioArb: fc.Arbitrary<Scenario> = fc.constantFrom(...ZONES).chain((zone) =>
  fc
    .record({
      weekly: weeklyArb,
      t: instantArb(zone),
      holidays: fc.uniqueArray(fc.integer({ min: -2, max: 10 }), { maxLength: 4 }),
    })
    .map(({ weekly, t, holidays }) => ({
      hours: {
        timeZone: zone,
        weekly,
        closedDates: holidays.map((days) => DateTime.fromMillis(t + days * DAY, { zone }).toISODate()!),
      },
      t,
    })),
);
const minuteAligned = (s: Scenario): Scenario => ({ ...s, t: Math.floor(s.t / MINUTE) * MINUTE });

// ---------------------------------------------------------------------------------------------------------------

describe('business hours against a wall-clock oracle (fast-check)', () => {
  it('the DST transitions the instants cluster around are real offset changes', () => {
    for (const [zone, transitions] of Object.entries(TRANSITIONS)) {
      for (const iso of transitions) {
        const ts = Date.parse(iso);
        expect(DateTime.fromMillis(ts - 1, { zone }).offset, `${zone} ${iso}`).not.toBe(DateTime.fromMillis(ts, { zone }).offset);
      }
    }
  });

  it('generated schedules are valid business hours', () => {
    fc.assert(
      fc.property(scenarioArb, ({ hours }) => {
        expect(businessHoursSchema.safeParse(hours).success).toBe(true);
      }),
      { numRuns: 80 },
    );
  });

  it('isOpenAt agrees with the oracle on random instants, DST nights included', () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.array(fc.integer({ min: -2 * DAY, max: 2 * DAY }), { minLength: 1, maxLength: 40 }),
        ({ hours, t }, deltas) => {
          for (const ts of [t, ...deltas.map((d) => t + d)])
            expect(isOpenAt(hours, new Date(ts)), new Date(ts).toISOString()).toBe(oracleIsOpen(hours, ts));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('nextOpening(t) is the first open instant at or after t: open itself, nothing open in [t, nextOpening)', () => {
    fc.assert(
      fc.property(scenarioArb, ({ hours, t }) => {
        const opening = nextOpening(hours, new Date(t));
        expect(opening).not.toBeNull();
        const o = opening!.getTime();
        expect(o).toBeGreaterThanOrEqual(t);
        expect(isOpenAt(hours, opening!)).toBe(true);
        expect(oracleIsOpen(hours, o)).toBe(true);
        for (const ts of o > t ? sampledInstants(t, o) : [])
          expect(oracleIsOpen(hours, ts), new Date(ts).toISOString()).toBe(false);
      }),
      { numRuns: 60 },
    );
  });

  it('nextClosing(t) is the first closed instant at or after t: closed itself, everything open in [t, nextClosing)', () => {
    fc.assert(
      fc.property(scenarioArb, ({ hours, t }) => {
        const closing = nextClosing(hours, new Date(t));
        if (closing === null) {
          // Only a schedule open around the clock never closes: then the oracle finds it open throughout.
          for (const ts of sampledInstants(t, t + 3 * DAY)) expect(oracleIsOpen(hours, ts)).toBe(true);
          return;
        }
        const c = closing.getTime();
        expect(c).toBeGreaterThanOrEqual(t);
        expect(isOpenAt(hours, closing)).toBe(false);
        expect(oracleIsOpen(hours, c)).toBe(false);
        for (const ts of c > t ? sampledInstants(t, c) : [])
          expect(oracleIsOpen(hours, ts), new Date(ts).toISOString()).toBe(true);
      }),
      { numRuns: 80 },
    );
  });

  it('opening and closing alternate: nextClosing(nextOpening(t)) lies strictly after the opening', () => {
    fc.assert(
      fc.property(scenarioArb, ({ hours, t }) => {
        const opening = nextOpening(hours, new Date(t))!;
        const closing = nextClosing(hours, opening);
        if (closing !== null) expect(closing.getTime()).toBeGreaterThan(opening.getTime());
        if (closing !== null) expect(nextOpening(hours, closing)!.getTime()).toBeGreaterThan(closing.getTime());
      }),
      { numRuns: 300 },
    );
  });

  it('addBusinessTime(t, d) is the earliest instant by which d of open time has passed: businessTimeBetween inverts it', () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 0, max: 3 * DAY }), ({ hours, t }, d) => {
        const due = addBusinessTime(hours, new Date(t), d);
        expect(due).not.toBeNull();
        expect(businessTimeBetween(hours, new Date(t), due!)).toBe(d);
        if (d > 0) expect(isOpenAt(hours, new Date(due!.getTime() - 1))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('addBusinessTime(t, d) for whole minutes: the oracle counts exactly d of open minutes in [t, due)', () => {
    fc.assert(
      fc.property(
        scenarioArb.map(minuteAligned),
        fc.oneof(fc.integer({ min: 0, max: 12 * 60 }), fc.integer({ min: 0, max: 3 * 24 * 60 })),
        ({ hours, t }, minutes) => {
          const due = addBusinessTime(hours, new Date(t), minutes * MINUTE)!.getTime();
          // Sparse schedules stretch d over weeks; the oracle walks spans of up to a few days.
          fc.pre(due - t <= 2 * DAY);
          let open = 0;
          for (let ts = t; ts < due; ts += MINUTE) if (oracleIsOpen(hours, ts)) open++;
          expect(open).toBe(minutes);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('businessTimeBetween counts the open minutes the oracle sees and adds up over consecutive ranges', () => {
    fc.assert(
      fc.property(
        scenarioArb.map(minuteAligned),
        fc.integer({ min: 0, max: 24 * 60 }),
        fc.integer({ min: 0, max: 3 * 24 * 60 }),
        ({ hours, t }, first, second) => {
          const [a, b, c] = [t, t + first * MINUTE, t + (first + second) * MINUTE];
          let open = 0;
          for (let ts = a; ts < b; ts += MINUTE) if (oracleIsOpen(hours, ts)) open++;
          const between = (x: number, y: number) => businessTimeBetween(hours, new Date(x), new Date(y));
          expect(between(a, b)).toBe(open * MINUTE);
          expect(between(a, b) + between(b, c)).toBe(between(a, c));
        },
      ),
      { numRuns: 50 },
    );
  });
});
