// The bench's figures that have a goal, each beside it, from the sections that ran in this one run: what an operator
// or a reviewer reads first. A section left out (BENCH_SKIP) leaves its rows out.

interface Goal {
  figure: string;
  /** The measured value, or undefined when its section did not run. */
  value: (figures: Record<string, unknown>) => number | undefined;
  goal: string;
  met: (value: number) => boolean;
  digits?: number;
}

const num = (figures: Record<string, unknown>, key: string) =>
  typeof figures[key] === 'number' ? (figures[key] as number) : undefined;
const ratio = (top: number | undefined, bottom: number | undefined) =>
  top === undefined || bottom === undefined || bottom === 0 ? undefined : top / bottom;
const countOf = (figures: Record<string, unknown>, key: string, count: 'events' | 'actions') =>
  (figures[key] as Partial<Record<'events' | 'actions', number>> | undefined)?.[count];

/** History events and Temporal actions, of the typical and the longest test conversation: at most half of before. */
function halvedHistoryGoals(): Goal[] {
  const lives = [
    { life: 'a typical conversation', now: 'historyNow', before: 'historyToday' },
    { life: 'the longest test conversation', now: 'historyLongestNow', before: 'historyLongestToday' },
  ];
  const counts = [
    { count: 'events', name: 'history events' },
    { count: 'actions', name: 'Temporal actions' },
  ] as const;
  return lives.flatMap(({ life, now, before }) =>
    counts.map(({ count, name }) => ({
      figure: `${name} of ${life}, now ÷ before`,
      value: (f: Record<string, unknown>) => ratio(countOf(f, now, count), countOf(f, before, count)),
      goal: '≤ 0.5',
      met: (v: number) => v <= 0.5,
    })),
  );
}

const GOALS: Goal[] = [
  {
    figure: 'forwarder ingest ÷ bare signalWithStart (mails per second)',
    value: (f) => num(f, 'ratio'),
    goal: '≥ 0.8',
    met: (v) => v >= 0.8,
  },
  {
    figure: 'IMAP backlog drain ÷ forwarder (mails per second)',
    value: (f) => num(f, 'drainToForwarderRatio'),
    goal: '≥ 0.9',
    met: (v) => v >= 0.9,
  },
  {
    figure: 'SMTP receiver ÷ forwarder (mails per second)',
    value: (f) => num(f, 'smtpToForwarderRatio'),
    goal: '≥ 0.8',
    met: (v) => v >= 0.8,
  },
  {
    figure: 'conversations to their first wait ÷ bare timer workflows (time)',
    value: (f) => num(f, 'waitingStartRatio'),
    goal: '≤ 1.5',
    met: (v) => v <= 1.5,
  },
  {
    figure: 'the same, worker CPU per workflow',
    value: (f) => ratio(num(f, 'waitingMailroomWorkerCpuMsPerWorkflow'), num(f, 'waitingBareWorkerCpuMsPerWorkflow')),
    goal: '≤ 2',
    met: (v) => v <= 2,
  },
  {
    figure: 'the same, worker RSS above the idle worker',
    value: (f) => num(f, 'waitingRssRatio'),
    goal: '≤ 1.05',
    met: (v) => v <= 1.05,
  },
  {
    figure: "API's longest stall while a big mail is posted, PostgreSQL (ms)",
    value: (f) => num(f, 'stallBigMailPostgresMaxMs'),
    goal: '≤ 50',
    met: (v) => v <= 50,
    digits: 1,
  },
  {
    figure: "API's longest stall while a big mail is posted, embedded database (ms)",
    value: (f) => num(f, 'stallBigMailEmbeddedMaxMs'),
    goal: '≤ 50',
    met: (v) => v <= 50,
    digits: 1,
  },
  ...halvedHistoryGoals(),
];

/** Prints every goal whose figure this run measured; returns how many were met, for the JSON line. */
export function printGoals(
  figures: Record<string, unknown>,
  printTable: (header: string[], rows: string[][], textColumns?: number) => void,
) {
  const rows = GOALS.flatMap((goal) => {
    const value = goal.value(figures);
    return value === undefined ? [] : [{ goal, value, met: goal.met(value) }];
  });
  if (rows.length === 0) return {};
  console.log('\nGoals (issue 14), as measured in this run');
  printTable(
    ['figure', 'measured', 'goal', ''],
    rows.map(({ goal, value, met }) => [goal.figure, value.toFixed(goal.digits ?? 3), goal.goal, met ? 'met' : 'MISSED']),
    1,
  );
  return { goalsMeasured: rows.length, goalsMet: rows.filter((row) => row.met).length };
}
