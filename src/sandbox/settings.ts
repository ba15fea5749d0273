/** How the code_interpreter sandbox runs: where its programs are, and the limits of each session. */
export interface SandboxSettings {
  /** False: the pool reports unavailable with reason 'disabled by ASSISTD_CODE_INTERPRETER=off'. */
  enabled: boolean;
  /** The Python with numpy, pandas and matplotlib (Debian's; the first `python3` on a PATH may lack them). */
  python: string;
  /** bubblewrap; a bare name is looked up on PATH. */
  bwrap: string;
  /** Soft timeout of a cell (KeyboardInterrupt, the session kept); a caller may ask for a smaller one. */
  cellTimeoutMs: number;
  /** After the soft interrupt, how long a cell may take to stop before the session is killed and restarted. */
  killGraceMs: number;
  /** RLIMIT_AS of the session's processes (each process; a fork gets its own). */
  memoryBytes: number;
  /**
   * RLIMIT_NPROC: processes and threads of one session. Linux (≥ 5.14) counts them per uid within each user
   * namespace, and every session has its own, so this bounds each session separately even though all sessions
   * run as the same host uid; that host uid's total is bounded only by the server's own RLIMIT_NPROC.
   */
  maxProcesses: number;
  /** RLIMIT_FSIZE: the largest file a session can write (in /mnt/data, /tmp or /dev/shm). */
  maxFileBytes: number;
  /** RLIMIT_CPU of a session's life (its Python process; the session is restarted when it is reached). */
  cpuSeconds: number;
  /** Size of the /mnt/data tmpfs; /tmp gets a quarter of it, /dev/shm a sixteenth. */
  dataBytes: number;
  /** Characters of output kept per cell: the first and last halves, with a marked truncation between. */
  outputChars: number;
  /** A session unused this long is closed. */
  idleMs: number;
  /**
   * A session is closed this long after it started, used or not (once its running cell ends; one held by a caller,
   * such as a run between its calls, once it is let go).
   */
  lifetimeMs: number;
  /**
   * Live sessions per process. One more evicts the least recently used session no one is using; when every session
   * is in use (held by a caller or running code), `SandboxPool.session` waits for one, first come first served.
   */
  maxSessions: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const DEFAULT_SANDBOX_SETTINGS: SandboxSettings = {
  enabled: true,
  python: '/usr/bin/python3',
  bwrap: 'bwrap',
  cellTimeoutMs: 120_000,
  killGraceMs: 3_000,
  memoryBytes: 2 * GiB,
  maxProcesses: 64,
  maxFileBytes: 256 * MiB,
  cpuSeconds: 1800,
  dataBytes: 1 * GiB,
  outputChars: 20_000,
  idleMs: 30 * 60_000,
  lifetimeMs: 60 * 60_000,
  maxSessions: 8,
};
