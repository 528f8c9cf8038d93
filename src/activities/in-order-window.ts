// A few mails of one IMAP session in flight at once, while the folder's cursor still advances strictly in UID order:
// the cursor moves to the last mail of the longest run of finished ones, so a crash re-reads at most the mails that
// were in flight, and never skips one.

export interface WindowTask {
  /** Waits while a task of the same key is in flight (e.g. the sender: their mails are threaded one after another). */
  key?: string | undefined;
  /** Waits until nothing is in flight, and holds the next ones back until it is done (e.g. a reply to an earlier mail). */
  alone?: boolean;
}

interface Entry<T> {
  item: T;
  done: boolean;
}

export class InOrderWindow<T> {
  private readonly entries: Array<Entry<T>> = [];
  private head = 0;
  private readonly inFlight = new Map<Promise<void>, WindowTask>();
  private committing: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly limit: number,
    /** Told the last item of the longest finished prefix, in order, each item at most once. */
    private readonly onPrefixDone: (item: T) => Promise<void>,
  ) {}

  /** Starts `work` for the next item once a place is free; throws (after the others settle) once a task has failed. */
  async run(item: T, work: () => Promise<void>, task: WindowTask = {}): Promise<void> {
    while (!this.failure && this.mustWait(task)) await Promise.race(this.inFlight.keys());
    if (this.failure) return this.drain();
    const entry: Entry<T> = { item, done: false };
    this.entries.push(entry);
    const running: Promise<void> = work()
      .then(
        () => {
          entry.done = true;
          this.commitPrefix();
        },
        (error: unknown) => {
          this.failure ??= { error };
        },
      )
      .finally(() => this.inFlight.delete(running));
    this.inFlight.set(running, task);
  }

  /** Waits for every task started, moves past the finished prefix, and throws the first failure if there was one. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight.keys());
    await this.committing;
    if (this.failure) throw this.failure.error;
  }

  private mustWait(task: WindowTask): boolean {
    if (this.inFlight.size >= this.limit) return true;
    if (this.inFlight.size === 0) return false;
    if (task.alone) return true;
    for (const running of this.inFlight.values()) {
      if (running.alone || (task.key !== undefined && running.key === task.key)) return true;
    }
    return false;
  }

  private commitPrefix() {
    this.committing = this.committing.then(async () => {
      let last: Entry<T> | undefined;
      while (this.head < this.entries.length && this.entries[this.head]!.done) last = this.entries[this.head++];
      if (!last) return;
      try {
        await this.onPrefixDone(last.item);
      } catch (error) {
        this.failure ??= { error };
      }
    });
  }
}
