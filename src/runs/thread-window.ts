import type { Message } from '../domain/objects.ts';
import type { Scope, Store } from '../storage/store.ts';

/** How many of the most recent messages a run reads first: most threads are read whole at once. */
const FIRST_READ = 256;
/** Each further read takes the window to this many times its size. */
const GROWTH = 4;

type Read = (end: 'oldest' | 'newest', skip: number, limit: number) => Promise<Message[]>;

/**
 * The messages of a run's thread that its prompt may show: the most recent ones, read back from the thread's end
 * only as far as the model's window reaches (buildContext says when it needs older ones), and the thread's first
 * message, which buildContext keeps when it fits. A thread is no longer read whole for every turn: on a thread of
 * 20,000 messages that cost ~200 ms of CPU per run, most of it parsing on the event loop, for a prompt of a few
 * hundred (bench/README.md, "Long-thread benchmark"); OpenAI allowed 100,000.
 *
 * Reads are by position from the end. A message added since (the run's own, given to `add`) or deleted meanwhile
 * shifts them by one: a message read twice is kept once, one skipped is missing from this run's prompts only, and
 * the thread's first message is read again rather than lost.
 */
export class ThreadWindow {
  /** The thread's first message, while messages between it and `recent` are unread. */
  private first: Message | undefined;
  /** Oldest first. */
  private recent: Message[];

  private constructor(
    private readonly read: Read,
    recent: Message[],
    first: Message | undefined,
  ) {
    this.recent = recent;
    this.first = first;
  }

  static async open(
    store: Pick<Store, 'threadMessagesFrom'>,
    scope: Scope,
    threadId: string,
    firstRead = FIRST_READ,
  ): Promise<ThreadWindow> {
    const read: Read = (end, skip, limit) => store.threadMessagesFrom(scope, threadId, end, skip, limit);
    const recent = (await read('newest', 0, firstRead)).reverse();
    if (recent.length < firstRead) return new ThreadWindow(read, recent, undefined);
    const [first] = await read('oldest', 0, 1);
    return new ThreadWindow(read, recent, first === undefined || first.id === recent[0]!.id ? undefined : first);
  }

  /** Oldest first: the thread's first message and the recent ones (see olderUnread), or the whole thread. */
  get messages(): Message[] {
    return this.first === undefined ? this.recent : [this.first, ...this.recent];
  }

  /** Whether messages between the first (`messages[0]`) and the next one are unread. */
  get olderUnread(): boolean {
    return this.first !== undefined;
  }

  /** Reads older messages, up to GROWTH times the window's size; the whole thread once they reach its first. */
  async readOlder(): Promise<void> {
    const first = this.first;
    if (first === undefined) return;
    const limit = this.recent.length * (GROWTH - 1);
    const page = await this.read('newest', this.recent.length, limit);
    const known = new Set(this.recent.map((m) => m.id));
    const older = page.filter((m) => !known.has(m.id)).reverse();
    this.recent = [...older, ...this.recent];
    if (older[0]?.id === first.id) this.first = undefined;
    else if (page.length < limit) {
      // The page reached the thread's start without its first message: messages deleted meanwhile shifted the
      // positions. The first message, if it is still there, is read again.
      const [still] = await this.read('oldest', 0, 1);
      if (still !== undefined && !this.recent.some((m) => m.id === still.id)) this.recent.unshift(still);
      this.first = undefined;
    }
  }

  /** The run's own messages, finished and stored since the window was read. */
  add(messages: readonly Message[]): void {
    this.recent.push(...messages);
  }
}
