import { describe, expect, it } from 'vitest';
import { chooseRoundRobin, type AssignmentCandidate } from '../../src/domain/assignment.js';

const joined = new Date('2026-01-01T00:00:00Z');
const agent = (userId: string, lastAssignedAt: string | null, available = true, joinedAt = joined): AssignmentCandidate => ({
  userId,
  available,
  lastAssignedAt: lastAssignedAt ? new Date(lastAssignedAt) : null,
  joinedAt,
});

describe('chooseRoundRobin', () => {
  it('gives the conversation to an agent who never had one before anyone else', () => {
    expect(chooseRoundRobin([agent('a', '2026-02-01T10:00:00Z'), agent('b', null)])?.userId).toBe('b');
  });

  it('gives it to the agent whose last assignment is oldest', () => {
    expect(chooseRoundRobin([agent('a', '2026-02-01T10:00:00Z'), agent('b', '2026-02-01T09:00:00Z')])?.userId).toBe('b');
  });

  it('skips unavailable agents', () => {
    expect(chooseRoundRobin([agent('a', null, false), agent('b', '2026-02-01T09:00:00Z')])?.userId).toBe('b');
  });

  it('breaks ties by who joined the channel first', () => {
    const later = new Date('2026-01-02T00:00:00Z');
    expect(chooseRoundRobin([agent('a', null, true, later), agent('b', null, true, joined)])?.userId).toBe('b');
  });

  it('finds nobody when no agent is available', () => {
    expect(chooseRoundRobin([agent('a', null, false)])).toBeUndefined();
    expect(chooseRoundRobin([])).toBeUndefined();
  });

  it('cycles through every agent once before anyone gets a second conversation', () => {
    let candidates = [agent('a', null), agent('b', null), agent('c', null)];
    const order: string[] = [];
    for (let turn = 0; turn < 6; turn++) {
      const chosen = chooseRoundRobin(candidates)!;
      order.push(chosen.userId);
      const at = new Date(Date.UTC(2026, 1, 1, 0, turn));
      candidates = candidates.map((c) => (c.userId === chosen.userId ? { ...c, lastAssignedAt: at } : c));
    }
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });
});
