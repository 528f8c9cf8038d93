import { describe, expect, it } from 'vitest';
import { InOrderWindow } from '../../src/activities/in-order-window.js';

/** A task that finishes when the test says so. */
function gate() {
  let open!: () => void;
  let fail!: (error: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('InOrderWindow', () => {
  it('runs up to its limit at once and reports only the finished prefix, in order', async () => {
    const reported: number[] = [];
    const window = new InOrderWindow<number>(3, async (uid) => void reported.push(uid));
    const gates = [gate(), gate(), gate(), gate()];
    const started: number[] = [];
    for (const uid of [1, 2, 3]) await window.run(uid, () => (started.push(uid), gates[uid - 1]!.promise));
    expect(started).toEqual([1, 2, 3]);
    const fourth = window.run(4, () => (started.push(4), gates[3]!.promise));
    await turn();
    expect(started).toEqual([1, 2, 3]); // the window is full

    gates[1]!.open(); // 2 finishes before 1: nothing is reported yet
    await fourth;
    expect(started).toEqual([1, 2, 3, 4]);
    await turn();
    expect(reported).toEqual([]);
    gates[0]!.open();
    await turn();
    expect(reported).toEqual([2]); // 1 and 2 done: the cursor moves to 2 at once
    gates[3]!.open();
    gates[2]!.open();
    await window.drain();
    expect(reported.at(-1)).toBe(4);
    expect(reported).toEqual([...reported].sort((a, b) => a - b));
  });

  it('keeps tasks of one key apart, and a task alone with nothing beside it', async () => {
    const window = new InOrderWindow<number>(8, async () => undefined);
    const first = gate();
    const started: number[] = [];
    await window.run(1, () => (started.push(1), first.promise), { key: 'ann@example.com' });
    await window.run(2, async () => void started.push(2), { key: 'bob@example.com' });
    const sameSender = window.run(3, async () => void started.push(3), { key: 'ann@example.com' });
    await turn();
    expect(started).toEqual([1, 2]);
    first.open();
    await sameSender;
    const second = gate();
    await window.run(4, () => (started.push(4), second.promise), { key: 'cy@example.com' });
    const reply = window.run(5, async () => void started.push(5), { alone: true });
    await turn();
    expect(started).toEqual([1, 2, 3, 4]);
    second.open();
    await reply;
    await window.drain();
    expect(started).toEqual([1, 2, 3, 4, 5]);
  });

  it('stops at a failure: the prefix before it is reported, nothing after it starts, and the failure is thrown', async () => {
    const reported: number[] = [];
    const window = new InOrderWindow<number>(2, async (uid) => void reported.push(uid));
    const failing = gate();
    await window.run(1, async () => undefined);
    await window.run(2, () => failing.promise);
    await window.run(3, async () => undefined);
    failing.fail(new Error('Temporal is away'));
    let started = false;
    await expect(window.run(4, async () => void (started = true))).rejects.toThrow('Temporal is away');
    expect(started).toBe(false);
    expect(reported.at(-1)).toBe(1);
  });
});
