import { describe, expect, it } from 'vitest';
import {
  addBusinessTime,
  MAX_BUSINESS_TIME_MS,
  businessHoursSchema,
  businessTimeBetween,
  describeInstant,
  isOpenAt,
  nextClosing,
  nextOpening,
  type BusinessHours,
  type BusinessHoursInterval,
  type Weekday,
} from '../../src/domain/business-hours.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

const interval = (start: string, end: string): BusinessHoursInterval => ({ start, end });
const hours = (timeZone: string, weekly: BusinessHours['weekly'], closedDates: string[] = []): BusinessHours => ({
  timeZone,
  weekly,
  closedDates,
});
const workdays = (...intervals: BusinessHoursInterval[]): BusinessHours['weekly'] =>
  Object.fromEntries((['monday', 'tuesday', 'wednesday', 'thursday', 'friday'] as Weekday[]).map((d) => [d, intervals]));
const everyDay = (...intervals: BusinessHoursInterval[]): BusinessHours['weekly'] => ({
  ...workdays(...intervals),
  saturday: intervals,
  sunday: intervals,
});
/** Instants are written as local wall time with the offset in force, e.g. '2026-11-20T18:00+01:00'. */
const at = (iso: string) => new Date(iso);

const berlinOffice = hours('Europe/Berlin', workdays(interval('09:00', '17:00')));

describe('isOpenAt and nextOpening: a weekday office', () => {
  it('is open from the start of an interval up to, not including, its end', () => {
    expect(isOpenAt(berlinOffice, at('2026-11-18T08:59:59.999+01:00'))).toBe(false);
    expect(isOpenAt(berlinOffice, at('2026-11-18T09:00+01:00'))).toBe(true);
    expect(isOpenAt(berlinOffice, at('2026-11-18T16:59:59.999+01:00'))).toBe(true);
    expect(isOpenAt(berlinOffice, at('2026-11-18T17:00+01:00'))).toBe(false);
  });

  it('waits over the weekend: Friday 18:00 opens next on Monday 09:00', () => {
    expect(nextOpening(berlinOffice, at('2026-11-20T18:00+01:00'))).toEqual(at('2026-11-23T09:00+01:00'));
  });

  it('answers the same instant when already open', () => {
    const inside = at('2026-11-18T10:17:23.456+01:00');
    expect(nextOpening(berlinOffice, inside)).toEqual(inside);
  });

  it('closes at 17:00 when asked during the day, and is closed at once when asked at night', () => {
    expect(nextClosing(berlinOffice, at('2026-11-18T10:00+01:00'))).toEqual(at('2026-11-18T17:00+01:00'));
    const night = at('2026-11-18T22:00+01:00');
    expect(nextClosing(berlinOffice, night)).toEqual(night);
  });

  it('waits for the lunch break to end with two intervals a day', () => {
    const lunch = hours('Europe/Berlin', workdays(interval('09:00', '12:00'), interval('13:00', '17:00')));
    expect(isOpenAt(lunch, at('2026-11-18T12:15+01:00'))).toBe(false);
    expect(nextOpening(lunch, at('2026-11-18T12:15+01:00'))).toEqual(at('2026-11-18T13:00+01:00'));
    expect(nextClosing(lunch, at('2026-11-18T10:00+01:00'))).toEqual(at('2026-11-18T12:00+01:00'));
  });

  it('treats touching or overlapping intervals as one opening', () => {
    const touching = hours('Europe/Berlin', {
      monday: [interval('09:00', '12:00'), interval('12:00', '14:00'), interval('10:00', '13:30')],
    });
    expect(nextClosing(touching, at('2026-11-23T09:30+01:00'))).toEqual(at('2026-11-23T14:00+01:00'));
  });
});

describe('intervals across midnight', () => {
  const lateFriday = hours('Europe/Berlin', { friday: [interval('22:00', '02:00')] });

  it('stays open past midnight into Saturday until the end time', () => {
    expect(isOpenAt(lateFriday, at('2026-11-20T21:59+01:00'))).toBe(false);
    expect(isOpenAt(lateFriday, at('2026-11-20T23:00+01:00'))).toBe(true);
    expect(isOpenAt(lateFriday, at('2026-11-21T01:00+01:00'))).toBe(true);
    expect(isOpenAt(lateFriday, at('2026-11-21T02:00+01:00'))).toBe(false);
    expect(nextClosing(lateFriday, at('2026-11-20T23:00+01:00'))).toEqual(at('2026-11-21T02:00+01:00'));
  });

  it('is open around the clock on consecutive whole days', () => {
    const weekend = hours('Europe/Berlin', { saturday: [interval('00:00', '24:00')], sunday: [interval('00:00', '24:00')] });
    expect(nextClosing(weekend, at('2026-11-21T12:00+01:00'))).toEqual(at('2026-11-23T00:00+01:00'));
  });

  it('never closes when open 24/7 without holidays', () => {
    expect(nextClosing(hours('Europe/Berlin', everyDay(interval('00:00', '24:00'))), at('2026-11-20T12:00+01:00'))).toBeNull();
    expect(
      nextClosing(
        hours('Asia/Kolkata', everyDay(interval('18:00', '06:00'), interval('06:00', '18:00'))),
        at('2026-11-20T12:00+05:30'),
      ),
    ).toBeNull();
  });
});

describe('closed dates', () => {
  it('skips a holiday on a weekday to the next working day', () => {
    const withHoliday = { ...berlinOffice, closedDates: ['2026-11-18'] };
    expect(isOpenAt(withHoliday, at('2026-11-18T10:00+01:00'))).toBe(false);
    expect(nextOpening(withHoliday, at('2026-11-17T18:00+01:00'))).toEqual(at('2026-11-19T09:00+01:00'));
  });

  it('skips several holidays and a weekend in a row', () => {
    const christmas = { ...berlinOffice, closedDates: ['2026-12-24', '2026-12-25', '2026-12-31', '2027-01-01'] };
    expect(nextOpening(christmas, at('2026-12-23T17:00+01:00'))).toEqual(at('2026-12-28T09:00+01:00'));
    expect(nextOpening(christmas, at('2026-12-30T17:00+01:00'))).toEqual(at('2027-01-04T09:00+01:00'));
  });

  it('closes the overnight tail that falls on a holiday at midnight', () => {
    const lateFriday = hours('Europe/Berlin', { friday: [interval('22:00', '02:00')] }, ['2026-11-21']);
    expect(isOpenAt(lateFriday, at('2026-11-20T23:00+01:00'))).toBe(true);
    expect(isOpenAt(lateFriday, at('2026-11-21T01:00+01:00'))).toBe(false);
    expect(nextClosing(lateFriday, at('2026-11-20T23:00+01:00'))).toEqual(at('2026-11-21T00:00+01:00'));
  });

  it('keeps the tail after midnight of an interval that started on a holiday (the next date is not closed)', () => {
    const lateFriday = hours('Europe/Berlin', { friday: [interval('22:00', '02:00')] }, ['2026-11-20']);
    expect(isOpenAt(lateFriday, at('2026-11-20T23:00+01:00'))).toBe(false);
    expect(nextOpening(lateFriday, at('2026-11-20T12:00+01:00'))).toEqual(at('2026-11-21T00:00+01:00'));
  });

  it('closes a 24/7 channel for the whole local holiday', () => {
    const allDay = hours('America/New_York', everyDay(interval('00:00', '24:00')), ['2026-07-04']);
    expect(nextClosing(allDay, at('2026-07-01T12:00-04:00'))).toEqual(at('2026-07-04T00:00-04:00'));
    expect(nextOpening(allDay, at('2026-07-04T12:00-04:00'))).toEqual(at('2026-07-05T00:00-04:00'));
  });

  it('gives up (null) when holidays close every opening for more than two years', () => {
    const mondays: string[] = [];
    for (let t = Date.UTC(2026, 10, 23); t < Date.UTC(2029, 10, 23); t += 7 * 24 * HOUR)
      mondays.push(new Date(t).toISOString().slice(0, 10));
    const neverOpen = hours('Europe/Berlin', { monday: [interval('09:00', '17:00')] }, mondays);
    expect(nextOpening(neverOpen, at('2026-11-20T12:00+01:00'))).toBeNull();
    expect(addBusinessTime(neverOpen, at('2026-11-20T12:00+01:00'), HOUR)).toBeNull();
  });
});

describe('daylight saving time', () => {
  it('Berlin spring forward (2026-03-29): an interval from the skipped 02:30 opens at 03:00 CEST (01:00Z)', () => {
    const sunday = hours('Europe/Berlin', { sunday: [interval('02:30', '05:00')] });
    expect(nextOpening(sunday, at('2026-03-29T00:00+01:00'))).toEqual(at('2026-03-29T01:00Z'));
    expect(isOpenAt(sunday, at('2026-03-29T00:59:59.999Z'))).toBe(false);
    expect(nextClosing(sunday, at('2026-03-29T01:00Z'))).toEqual(at('2026-03-29T05:00+02:00'));
    expect(businessTimeBetween(sunday, at('2026-03-28T00:00Z'), at('2026-03-30T00:00Z'))).toBe(2 * HOUR);
  });

  it('Berlin spring forward: an interval entirely inside the skipped hour never opens that night', () => {
    const skipped = hours('Europe/Berlin', { sunday: [interval('02:10', '02:50')] });
    expect(nextOpening(skipped, at('2026-03-29T00:00+01:00'))).toEqual(at('2026-04-05T02:10+02:00'));
  });

  it('Berlin fall back (2026-10-25): 01:00–03:00 lasts three real hours, through the repeated hour', () => {
    const sunday = hours('Europe/Berlin', { sunday: [interval('01:00', '03:00')] });
    const opens = at('2026-10-25T01:00+02:00');
    expect(nextOpening(sunday, at('2026-10-24T12:00Z'))).toEqual(opens);
    expect(isOpenAt(sunday, at('2026-10-25T02:30+02:00'))).toBe(true);
    expect(isOpenAt(sunday, at('2026-10-25T02:30+01:00'))).toBe(true);
    expect(nextClosing(sunday, opens)).toEqual(at('2026-10-25T03:00+01:00'));
    expect(businessTimeBetween(sunday, at('2026-10-24T00:00Z'), at('2026-10-26T00:00Z'))).toBe(3 * HOUR);
  });

  it('Berlin fall back: an interval inside the repeated hour opens twice, the second time at the transition', () => {
    const sunday = hours('Europe/Berlin', { sunday: [interval('02:00', '02:30')] });
    expect(nextOpening(sunday, at('2026-10-25T02:45+02:00'))).toEqual(at('2026-10-25T02:00+01:00'));
    expect(nextClosing(sunday, at('2026-10-25T02:00+01:00'))).toEqual(at('2026-10-25T02:30+01:00'));
    expect(businessTimeBetween(sunday, at('2026-10-24T00:00Z'), at('2026-10-26T00:00Z'))).toBe(HOUR);
  });

  it('Berlin: a whole wall-clock Sunday holds 23 real hours in spring and 25 in autumn', () => {
    const sundays = hours('Europe/Berlin', { sunday: [interval('00:00', '24:00')] });
    expect(businessTimeBetween(sundays, at('2026-03-28T00:00Z'), at('2026-03-31T00:00Z'))).toBe(23 * HOUR);
    expect(businessTimeBetween(sundays, at('2026-10-24T00:00Z'), at('2026-10-27T00:00Z'))).toBe(25 * HOUR);
    expect(addBusinessTime(sundays, at('2026-03-29T00:00+01:00'), 23 * HOUR)).toEqual(at('2026-03-30T00:00+02:00'));
  });

  it('across the fall-back night 8 business hours from 22:00 end at 05:00 on the wall clock', () => {
    const nightShift = hours('Europe/Berlin', { saturday: [interval('20:00', '06:00')] });
    const from = at('2026-10-24T22:00+02:00');
    expect(addBusinessTime(nightShift, from, 8 * HOUR)).toEqual(at('2026-10-25T05:00+01:00'));
    expect(nextClosing(nightShift, from)).toEqual(at('2026-10-25T06:00+01:00'));
  });

  it('New York spring forward (2026-03-08): Sunday 00:00–06:00 holds 5 real hours', () => {
    const sunday = hours('America/New_York', { sunday: [interval('00:00', '06:00')] });
    expect(nextOpening(sunday, at('2026-03-07T12:00-05:00'))).toEqual(at('2026-03-08T00:00-05:00'));
    expect(nextClosing(sunday, at('2026-03-08T00:00-05:00'))).toEqual(at('2026-03-08T06:00-04:00'));
    expect(businessTimeBetween(sunday, at('2026-03-07T00:00Z'), at('2026-03-09T00:00Z'))).toBe(5 * HOUR);
  });

  it('New York fall back (2026-11-01): Sunday 00:00–06:00 holds 7 real hours', () => {
    const sunday = hours('America/New_York', { sunday: [interval('00:00', '06:00')] });
    expect(nextClosing(sunday, at('2026-11-01T00:00-04:00'))).toEqual(at('2026-11-01T06:00-05:00'));
    expect(businessTimeBetween(sunday, at('2026-10-31T00:00Z'), at('2026-11-02T00:00Z'))).toBe(7 * HOUR);
  });

  it('Lord Howe Island (30-minute shift) spring forward 2026-10-04: 02:10–03:00 opens at 02:30 and lasts 30 minutes', () => {
    const sunday = hours('Australia/Lord_Howe', { sunday: [interval('02:10', '03:00')] });
    expect(nextOpening(sunday, at('2026-10-04T00:00+10:30'))).toEqual(at('2026-10-04T02:30+11:00'));
    expect(businessTimeBetween(sunday, at('2026-10-03T00:00Z'), at('2026-10-05T00:00Z'))).toBe(30 * MINUTE);
  });

  it('Lord Howe Island fall back 2026-04-05: 01:30–02:00 lasts an hour, the half hour is repeated', () => {
    const sunday = hours('Australia/Lord_Howe', { sunday: [interval('01:30', '02:00')] });
    expect(nextOpening(sunday, at('2026-04-04T12:00Z'))).toEqual(at('2026-04-05T01:30+11:00'));
    expect(nextClosing(sunday, at('2026-04-05T01:30+11:00'))).toEqual(at('2026-04-05T02:00+10:30'));
    expect(businessTimeBetween(sunday, at('2026-04-04T00:00Z'), at('2026-04-06T00:00Z'))).toBe(HOUR);
  });

  it('Santiago (DST at midnight, 2026-09-06): the day whose midnight does not exist starts at 01:00', () => {
    const allDay = hours('America/Santiago', everyDay(interval('00:00', '24:00')), ['2026-09-05']);
    expect(nextOpening(allDay, at('2026-09-05T12:00-04:00'))).toEqual(at('2026-09-06T01:00-03:00'));
  });

  it('Kolkata (no DST, +05:30): Monday 09:30 opens at 04:00Z and a week holds five 8.5 hour days', () => {
    const office = hours('Asia/Kolkata', workdays(interval('09:30', '18:00')));
    expect(nextOpening(office, at('2026-05-31T12:00+05:30'))).toEqual(at('2026-06-01T04:00Z'));
    expect(businessTimeBetween(office, at('2026-06-01T00:00+05:30'), at('2026-06-08T00:00+05:30'))).toBe(5 * 8.5 * HOUR);
  });
});

describe('addBusinessTime and businessTimeBetween', () => {
  it('4 business hours from Friday 15:00 are due Monday 11:00', () => {
    const from = at('2026-11-20T15:00+01:00');
    const due = addBusinessTime(berlinOffice, from, 4 * HOUR);
    expect(due).toEqual(at('2026-11-23T11:00+01:00'));
    expect(businessTimeBetween(berlinOffice, from, due!)).toBe(4 * HOUR);
  });

  it('is due at the closing instant when the time runs out exactly then, not at the next opening', () => {
    expect(addBusinessTime(berlinOffice, at('2026-11-20T15:00+01:00'), 2 * HOUR)).toEqual(at('2026-11-20T17:00+01:00'));
  });

  it('starts counting at the next opening when added outside hours', () => {
    expect(addBusinessTime(berlinOffice, at('2026-11-21T10:00+01:00'), 30 * MINUTE)).toEqual(at('2026-11-23T09:30+01:00'));
  });

  it('adding nothing answers the start; negative or non-finite amounts are refused', () => {
    const from = at('2026-11-21T10:00+01:00');
    expect(addBusinessTime(berlinOffice, from, 0)).toEqual(from);
    expect(() => addBusinessTime(berlinOffice, from, -1)).toThrow(RangeError);
    expect(() => addBusinessTime(berlinOffice, from, Number.NaN)).toThrow(RangeError);
    // Bounded: an SLA of years with one-minute intervals took seconds of one thread.
    expect(() => addBusinessTime(berlinOffice, from, MAX_BUSINESS_TIME_MS + 1)).toThrow(RangeError);
    expect(addBusinessTime(berlinOffice, from, MAX_BUSINESS_TIME_MS)).toBeInstanceOf(Date);
  });

  it('counts two weeks of a weekday office as 80 hours, and nothing for an empty or reversed range', () => {
    const monday = at('2026-11-23T00:00+01:00');
    expect(businessTimeBetween(berlinOffice, monday, at('2026-12-07T00:00+01:00'))).toBe(80 * HOUR);
    expect(businessTimeBetween(berlinOffice, monday, monday)).toBe(0);
    expect(businessTimeBetween(berlinOffice, at('2026-11-24T00:00+01:00'), monday)).toBe(0);
  });

  it('businessTimeBetween inverts addBusinessTime for a range of amounts across a DST change', () => {
    const shifts = hours('America/New_York', {
      ...workdays(interval('08:15', '12:45'), interval('21:30', '01:10')),
      sunday: [interval('01:30', '03:30')],
    });
    const from = at('2026-10-28T10:00-04:00');
    for (const amount of [1, 59 * MINUTE, 4.5 * HOUR, 17 * HOUR + 1, 40 * HOUR, 100 * HOUR]) {
      const due = addBusinessTime(shifts, from, amount);
      expect(businessTimeBetween(shifts, from, due!)).toBe(amount);
      expect(isOpenAt(shifts, new Date(due!.getTime() - 1))).toBe(true);
    }
  });

  it('refuses an invalid date', () => {
    expect(() => nextOpening(berlinOffice, new Date(Number.NaN))).toThrow(RangeError);
  });
});

describe('describeInstant', () => {
  it("shows the instant on the channel's wall clock with the zone name", () => {
    expect(describeInstant(berlinOffice, at('2026-11-23T08:00Z'))).toBe('Mon 23 Nov 09:00 Europe/Berlin');
    expect(describeInstant(berlinOffice, at('2026-07-05T21:07:59Z'))).toBe('Sun 5 Jul 23:07 Europe/Berlin');
    expect(describeInstant(hours('Asia/Kolkata', workdays(interval('09:30', '18:00'))), at('2026-06-01T04:00Z'))).toBe(
      'Mon 1 Jun 09:30 Asia/Kolkata',
    );
  });
});

describe('businessHoursSchema', () => {
  const messages = (input: unknown) => {
    const result = businessHoursSchema.safeParse(input);
    return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('accepts a valid schedule and defaults missing closed dates to none', () => {
    const parsed = businessHoursSchema.parse({ timeZone: 'Europe/Berlin', weekly: { monday: [interval('22:00', '24:00')] } });
    expect(parsed).toEqual({ timeZone: 'Europe/Berlin', weekly: { monday: [interval('22:00', '24:00')] }, closedDates: [] });
    expect(messages({ ...berlinOffice, closedDates: ['2028-02-29'] })).toEqual([]);
  });

  it('names an unknown time zone', () => {
    expect(messages({ ...berlinOffice, timeZone: 'Mars/Olympus' })).toEqual([
      "timeZone: unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Berlin'",
    ]);
  });

  it("refuses times outside 00:00–23:59 ('24:00' only as an end)", () => {
    expect(messages(hours('UTC', { monday: [interval('25:00', '26:00')] }))).toEqual([
      "weekly.monday.0.start: start '25:00' must be a time 'HH:mm' from 00:00 to 23:59",
      "weekly.monday.0.end: end '26:00' must be a time 'HH:mm' from 00:00 to 24:00",
    ]);
    expect(messages(hours('UTC', { monday: [interval('24:00', '09:00')] }))).toEqual([
      "weekly.monday.0.start: start '24:00' must be a time 'HH:mm' from 00:00 to 23:59",
    ]);
    expect(messages(hours('UTC', { monday: [interval('9:00', '17:00')] }))).toHaveLength(1);
  });

  it('refuses an empty interval whose start equals its end', () => {
    expect(messages(hours('UTC', { friday: [interval('09:00', '09:00')] }))).toEqual([
      'weekly.friday.0.end: interval 09:00–09:00 is empty: start and end must differ (an end before the start crosses midnight; a whole day is 00:00–24:00)',
    ]);
  });

  it('refuses closed dates that are not calendar dates', () => {
    expect(messages({ ...berlinOffice, closedDates: ['2026-02-30', '2027-02-29', '26-01-01'] })).toEqual([
      "closedDates.0: closed date '2026-02-30' is not a calendar date 'YYYY-MM-DD'",
      "closedDates.1: closed date '2027-02-29' is not a calendar date 'YYYY-MM-DD'",
      "closedDates.2: closed date '26-01-01' is not a calendar date 'YYYY-MM-DD'",
    ]);
  });

  it('needs at least one opening interval in the week', () => {
    expect(messages(hours('UTC', {}))).toEqual(['weekly: business hours need at least one opening interval']);
    expect(messages(hours('UTC', { monday: [], tuesday: [] }))).toEqual([
      'weekly: business hours need at least one opening interval',
    ]);
  });

  it('names an unknown weekday', () => {
    expect(messages(hours('UTC', { monday: [interval('09:00', '17:00')], tues: [interval('09:00', '17:00')] } as never))).toEqual(
      ["weekly: unknown weekday 'tues': use monday, tuesday, wednesday, thursday, friday, saturday, sunday"],
    );
  });
});
