/**
 * The seccomp filter every sandbox runs under (bwrap loads it with `--seccomp FD` just before it starts Python): a
 * classic BPF program refusing, with EPERM, the system calls that hold memory which RLIMIT_AS does not count and no
 * sized tmpfs bounds. Without it one cell could keep the host's memory as long as its session lives:
 * - `shmget`: SysV shared memory, made, touched and detached in a loop, stays allocated in the session's IPC
 *   namespace (measured: 4 GiB held by one cell under a 2 GiB RLIMIT_AS, still held after the cell ended);
 * - `msgget`: SysV message queues, up to 32,000 queues of 16 KiB each in a new IPC namespace;
 * - `memfd_create`, `memfd_secret`: anonymous files filled with `write` are never mapped, so never counted; each can
 *   hold RLIMIT_FSIZE, times the open files allowed.
 * It also refuses what a cell has no use for and would reach outside its session, or deep into the kernel:
 * - `add_key`, `request_key`, `keyctl`: bwrap starts no keyring of its own, so the session keyring is the server's
 *   (a key added inside was read by the host process that shared it, and the server's keys could be read or cleared);
 * - `io_uring_setup`, `io_uring_enter`, `io_uring_register`, `userfaultfd`, `bpf`, `perf_event_open`: kernel
 *   interfaces with a long record of privilege escalations, which Docker's default profile refuses too.
 * Python, numpy, pandas and matplotlib use none of them (multiprocessing's semaphores live in the sized /dev/shm).
 * Calls through another ABI than the native one (i386's `int 0x80`, x32) are refused whole, so that none of the above
 * is reachable under another number.
 */

/** `struct sock_filter` opcodes (linux/bpf_common.h) and seccomp's return values (linux/seccomp.h). */
const LOAD_WORD = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JUMP_IF_EQUAL = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JUMP_IF_AT_LEAST = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RETURN = 0x06; // BPF_RET | BPF_K
const ALLOW = 0x7fff0000; // SECCOMP_RET_ALLOW
const REFUSE = 0x00050000 | 1; // SECCOMP_RET_ERRNO | EPERM
/** Offsets in `struct seccomp_data`. */
const SYSCALL_NUMBER = 0;
const ARCHITECTURE = 4;
/** x32 system calls are x86_64's numbers with this bit set. */
const X32_BIT = 0x40000000;

interface Architecture {
  /** AUDIT_ARCH_* of linux/audit.h. */
  audit: number;
  /** The numbers of the refused calls on this architecture. */
  refused: Record<RefusedCall, number>;
}

type RefusedCall =
  | 'shmget'
  | 'msgget'
  | 'memfd_create'
  | 'memfd_secret'
  | 'add_key'
  | 'request_key'
  | 'keyctl'
  | 'io_uring_setup'
  | 'io_uring_enter'
  | 'io_uring_register'
  | 'userfaultfd'
  | 'bpf'
  | 'perf_event_open';

/** By Node's `process.arch` (the numbers of arch/x86/entry/syscalls/syscall_64.tbl and the generic table's). */
const ARCHITECTURES: Record<string, Architecture> = {
  x64: {
    audit: 0xc000003e,
    refused: {
      shmget: 29,
      msgget: 68,
      memfd_create: 319,
      memfd_secret: 447,
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      userfaultfd: 323,
      bpf: 321,
      perf_event_open: 298,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    refused: {
      shmget: 194,
      msgget: 186,
      memfd_create: 279,
      memfd_secret: 447,
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      userfaultfd: 282,
      bpf: 280,
      perf_event_open: 241,
    },
  },
};

/** The system calls the filter refuses, by name (what the README and the tests name). */
export const REFUSED_SYSCALLS = Object.keys(ARCHITECTURES.x64!.refused);

/**
 * The compiled filter for `arch` (this process's by default), as bwrap reads it from its `--seccomp` fd; throws on an
 * architecture it is not written for, which makes the sandbox unavailable rather than run without it.
 */
export function seccompFilter(arch: string = process.arch): Buffer {
  const architecture = ARCHITECTURES[arch];
  if (architecture === undefined) throw new Error(`no seccomp filter is written for the ${arch} architecture`);
  const numbers = Object.values(architecture.refused);
  // [code, jump if true, jump if false, k]; a jump skips that many instructions.
  const program: Array<[number, number, number, number]> = [
    [LOAD_WORD, 0, 0, ARCHITECTURE],
    [JUMP_IF_EQUAL, 1, 0, architecture.audit],
    [RETURN, 0, 0, REFUSE],
    [LOAD_WORD, 0, 0, SYSCALL_NUMBER],
    [JUMP_IF_AT_LEAST, numbers.length + 1, 0, X32_BIT],
    // Each refused number jumps to the last instruction; the one after them allows.
    ...numbers.map((number, i): [number, number, number, number] => [JUMP_IF_EQUAL, numbers.length - i, 0, number]),
    [RETURN, 0, 0, ALLOW],
    [RETURN, 0, 0, REFUSE],
  ];
  const filter = Buffer.alloc(program.length * 8);
  for (const [i, [code, ifTrue, ifFalse, k]] of program.entries()) {
    filter.writeUInt16LE(code, i * 8);
    filter.writeUInt8(ifTrue, i * 8 + 2);
    filter.writeUInt8(ifFalse, i * 8 + 3);
    filter.writeUInt32LE(k, i * 8 + 4);
  }
  return filter;
}
