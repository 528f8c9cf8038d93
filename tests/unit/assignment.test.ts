import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  chooseAgent,
  hasFreeCapacity,
  planAssignments,
  type AssignmentCandidate,
  type AssignmentStrategy,
} from '../../src/domain/assignment.js';

const now = new Date('2026-03-01T12:00:00Z');

const agent = (
  userId: string,
  lastAssignedAt: string | null,
  { available = true, joinedOrder = 1, openConversations = 0, capacity = null as number | null } = {},
): AssignmentCandidate => ({
  userId,
  available,
  lastAssignedAt: lastAssignedAt ? new Date(lastAssignedAt) : null,
  joinedOrder,
  openConversations,
  capacity,
});

const queue = (n: number, eligibleUserIds?: readonly string[] | null) =>
  Array.from({ length: n }, (_, i) => ({ conversationId: `c${i + 1}`, eligibleUserIds }));

const assignees = (plan: Array<{ item: { conversationId: string }; userId: string }>) =>
  plan.map((p) => `${p.item.conversationId}→${p.userId}`);

describe('hasFreeCapacity', () => {
  it('is true below capacity or without a limit', () => {
    expect(hasFreeCapacity(agent('a', null, { openConversations: 2, capacity: 3 }))).toBe(true);
    expect(hasFreeCapacity(agent('a', null, { openConversations: 3, capacity: 3 }))).toBe(false);
    expect(hasFreeCapacity(agent('a', null, { openConversations: 5, capacity: 3 }))).toBe(false);
    expect(hasFreeCapacity(agent('a', null, { openConversations: 0, capacity: 0 }))).toBe(false);
    expect(hasFreeCapacity(agent('a', null, { openConversations: 1000, capacity: null }))).toBe(true);
  });
});

describe('chooseAgent: round robin', () => {
  const choose = (candidates: AssignmentCandidate[], exclude?: string[]) =>
    chooseAgent('round_robin', candidates, { exclude })?.userId;

  it('gives the conversation to an agent who never had one before anyone else', () => {
    expect(choose([agent('a', '2026-02-01T10:00:00Z'), agent('b', null)])).toBe('b');
  });

  it('gives it to the agent whose last assignment is oldest', () => {
    expect(choose([agent('a', '2026-02-01T10:00:00Z'), agent('b', '2026-02-01T09:00:00Z')])).toBe('b');
  });

  it('skips unavailable agents', () => {
    expect(choose([agent('a', null, { available: false }), agent('b', '2026-02-01T09:00:00Z')])).toBe('b');
  });

  it('skips agents at capacity', () => {
    expect(
      choose([agent('a', null, { openConversations: 2, capacity: 2 }), agent('b', '2026-02-01T09:00:00Z', { capacity: 2 })]),
    ).toBe('b');
  });

  it('ignores open conversations as long as there is capacity', () => {
    expect(choose([agent('a', null, { openConversations: 9 }), agent('b', '2026-02-01T09:00:00Z')])).toBe('a');
  });

  it('breaks ties by who joined the channel first, then by user id', () => {
    expect(choose([agent('a', null, { joinedOrder: 2 }), agent('b', null, { joinedOrder: 1 })])).toBe('b');
    expect(choose([agent('b', null), agent('a', null)])).toBe('a');
    expect(choose([agent('b', '2026-02-01T09:00:00Z'), agent('a', '2026-02-01T09:00:00Z')])).toBe('a');
  });

  it('skips excluded agents', () => {
    expect(choose([agent('a', null), agent('b', '2026-02-01T09:00:00Z')], ['a'])).toBe('b');
    expect(choose([agent('a', null)], ['a'])).toBeUndefined();
  });

  it('finds nobody when no agent is available or has capacity', () => {
    expect(choose([agent('a', null, { available: false })])).toBeUndefined();
    expect(choose([agent('a', null, { capacity: 0 })])).toBeUndefined();
    expect(choose([])).toBeUndefined();
  });

  it('cycles through every agent once before anyone gets a second conversation', () => {
    let candidates = [agent('a', null), agent('b', null), agent('c', null)];
    const order: string[] = [];
    for (let turn = 0; turn < 6; turn++) {
      const chosen = chooseAgent('round_robin', candidates)!;
      order.push(chosen.userId);
      const at = new Date(Date.UTC(2026, 1, 1, 0, turn));
      candidates = candidates.map((c) => (c.userId === chosen.userId ? { ...c, lastAssignedAt: at } : c));
    }
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });
});

describe('chooseAgent: load', () => {
  const choose = (candidates: AssignmentCandidate[], exclude?: string[]) => chooseAgent('load', candidates, { exclude })?.userId;

  it('picks the agent with the fewest open conversations', () => {
    expect(
      choose([agent('a', null, { openConversations: 3 }), agent('b', '2026-02-01T10:00:00Z', { openConversations: 1 })]),
    ).toBe('b');
  });

  it('breaks ties like round robin: longest waiting, then joined first, then user id', () => {
    expect(
      choose([
        agent('a', '2026-02-01T10:00:00Z', { openConversations: 1 }),
        agent('b', '2026-02-01T09:00:00Z', { openConversations: 1 }),
        agent('c', null, { openConversations: 2 }),
      ]),
    ).toBe('b');
    expect(choose([agent('a', null, { joinedOrder: 2 }), agent('b', null)])).toBe('b');
    expect(choose([agent('b', null), agent('a', null)])).toBe('a');
  });

  it('skips unavailable, full and excluded agents', () => {
    const candidates = [
      agent('a', null, { available: false }),
      agent('b', null, { openConversations: 1, capacity: 1 }),
      agent('c', null, { openConversations: 2 }),
      agent('d', null, { openConversations: 5 }),
    ];
    expect(choose(candidates)).toBe('c');
    expect(choose(candidates, ['c'])).toBe('d');
    expect(choose(candidates, ['c', 'd'])).toBeUndefined();
  });
});

describe('planAssignments', () => {
  it('rotates round robin across the queue', () => {
    const plan = planAssignments('round_robin', queue(5), [agent('a', null), agent('b', null), agent('c', null)], now);
    expect(assignees(plan)).toEqual(['c1→a', 'c2→b', 'c3→c', 'c4→a', 'c5→b']);
  });

  it('keeps rotating when earlier assignments lie in the future of `now`', () => {
    const candidates = [agent('a', '2026-03-02T00:00:00Z'), agent('b', '2026-03-01T18:00:00Z')];
    const plan = planAssignments('round_robin', queue(4), candidates, now);
    expect(assignees(plan)).toEqual(['c1→b', 'c2→a', 'c3→b', 'c4→a']);
  });

  it('never exceeds capacity and fills all free capacity', () => {
    const candidates = [
      agent('a', null, { capacity: 2, openConversations: 1 }),
      agent('b', null, { capacity: 3 }),
      agent('c', null, { capacity: 1, openConversations: 1 }),
    ];
    const plan = planAssignments('round_robin', queue(10), candidates, now);
    expect(assignees(plan)).toEqual(['c1→a', 'c2→b', 'c3→b', 'c4→b']);
  });

  it('balances by load', () => {
    const candidates = [
      agent('a', null, { openConversations: 3 }),
      agent('b', null, { openConversations: 0 }),
      agent('c', null, { openConversations: 1 }),
    ];
    const plan = planAssignments('load', queue(5), candidates, now);
    expect(assignees(plan)).toEqual(['c1→b', 'c2→c', 'c3→b', 'c4→c', 'c5→b']);
  });

  it('does not change the candidates it was given', () => {
    const candidates = [agent('a', null, { capacity: 1 })];
    planAssignments('load', queue(1), candidates, now);
    expect(candidates[0]).toEqual(agent('a', null, { capacity: 1 }));
  });

  it('gives a team conversation only to team members and skips it when none can take it', () => {
    const candidates = [agent('a', null), agent('b', null, { capacity: 0 }), agent('c', null)];
    const items = [
      { conversationId: 'c1', eligibleUserIds: ['b'] }, // team member at capacity: stays queued
      { conversationId: 'c2', eligibleUserIds: ['b', 'c'] },
      { conversationId: 'c3', eligibleUserIds: null },
      { conversationId: 'c4', eligibleUserIds: [] }, // empty team: nobody
      { conversationId: 'c5', eligibleUserIds: ['x'] }, // not a candidate
      { conversationId: 'c6' },
    ];
    expect(assignees(planAssignments('round_robin', items, candidates, now))).toEqual(['c2→c', 'c3→a', 'c6→c']);
  });

  it('returns the items themselves, in queue order', () => {
    const items = queue(2);
    const plan = planAssignments('round_robin', items, [agent('a', null)], now);
    expect(plan.map((p) => p.item)).toEqual(items);
    expect(plan[0]!.item).toBe(items[0]);
  });

  it('plans nothing for an empty queue or without candidates', () => {
    expect(planAssignments('round_robin', [], [agent('a', null)], now)).toEqual([]);
    expect(planAssignments('load', queue(3), [], now)).toEqual([]);
    expect(planAssignments('load', queue(3), [agent('a', null, { available: false })], now)).toEqual([]);
  });
});

describe('planAssignments properties', () => {
  const userIds = ['u1', 'u2', 'u3', 'u4', 'u5'];
  const time = fc.integer({ min: Date.UTC(2025, 0, 1), max: Date.UTC(2027, 0, 1) }).map((t) => new Date(t));
  const candidatesArb = fc.uniqueArray(
    fc.record({
      userId: fc.constantFrom(...userIds),
      available: fc.boolean(),
      lastAssignedAt: fc.option(time, { nil: null }),
      joinedOrder: fc.integer({ min: 1, max: 5 }),
      openConversations: fc.nat({ max: 6 }),
      capacity: fc.option(fc.nat({ max: 5 }), { nil: null }),
    }),
    { selector: (c) => c.userId, maxLength: userIds.length },
  );
  const queueArb = fc
    .array(fc.option(fc.subarray(userIds), { nil: null }), { maxLength: 25 })
    .map((eligible) => eligible.map((eligibleUserIds, i) => ({ conversationId: `c${i}`, eligibleUserIds })));
  const strategyArb = fc.constantFrom<AssignmentStrategy>('round_robin', 'load');

  it('never puts an agent over capacity and leaves an item queued only when nobody eligible could take it', () => {
    fc.assert(
      fc.property(strategyArb, queueArb, candidatesArb, time, (strategy, items, candidates, at) => {
        const plan = planAssignments(strategy, items, candidates, at);

        // Each item at most once, in queue order, to an eligible available candidate.
        const positions = plan.map((p) => items.indexOf(p.item));
        expect(positions).toEqual([...new Set(positions)].sort((a, b) => a - b));
        const byId = new Map(candidates.map((c) => [c.userId, c]));
        for (const { item, userId } of plan) {
          expect(byId.get(userId)?.available).toBe(true);
          if (item.eligibleUserIds) expect(item.eligibleUserIds).toContain(userId);
        }

        // Nobody over capacity.
        const open = new Map(candidates.map((c) => [c.userId, c.openConversations]));
        for (const { userId } of plan) open.set(userId, open.get(userId)! + 1);
        for (const c of candidates) {
          const assigned = plan.filter((p) => p.userId === c.userId).length;
          if (c.capacity !== null && assigned > 0) expect(open.get(c.userId)!).toBeLessThanOrEqual(c.capacity);
        }

        // An item left queued: no eligible available candidate has free capacity at the end.
        const planned = new Set(plan.map((p) => p.item));
        for (const item of items.filter((i) => !planned.has(i))) {
          const eligible = candidates.filter(
            (c) => c.available && (!item.eligibleUserIds || item.eligibleUserIds.includes(c.userId)),
          );
          for (const c of eligible) expect(hasFreeCapacity({ ...c, openConversations: open.get(c.userId)! })).toBe(false);
        }
      }),
    );
  });

  it('round robin without limits spreads evenly: counts differ by at most one', () => {
    fc.assert(
      fc.property(queueArb, candidatesArb, time, (items, candidates, at) => {
        const unlimited = candidates.map((c) => ({ ...c, available: true, capacity: null }));
        const plan = planAssignments(
          'round_robin',
          items.map((i) => ({ ...i, eligibleUserIds: null })),
          unlimited,
          at,
        );
        expect(plan).toHaveLength(unlimited.length === 0 ? 0 : items.length);
        if (unlimited.length === 0) return;
        const counts = unlimited.map((c) => plan.filter((p) => p.userId === c.userId).length);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      }),
    );
  });
});
