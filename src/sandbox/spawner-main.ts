/**
 * The sandbox spawner's own process (spawner.ts starts it, with an IPC channel): it starts each sandbox command,
 * writes its seccomp filter, and hands the server the three ends of the sandbox's stdio as file descriptors. It
 * kills a sandbox when asked, says when one exited, and when its channel closes (the server exited or was killed)
 * kills every sandbox it started and exits.
 *
 * It imports nothing of the server's but the seccomp filter's fd (bwrap-command.ts): its heap stays small, so that
 * its forks stay cheap.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { type SandboxCommand, SECCOMP_FD } from './bwrap-command.ts';

/** What the server asks: start a command (`seccomp` in base64), or kill what it started. */
export type SpawnerRequest =
  | ({ type: 'spawn'; id: number; command: string; args: string[]; seccomp: string } & SandboxCommand['spawn'])
  | { type: 'kill'; id: number };

/**
 * What the spawner says of the command `id`: started (`spawned`, then one `stdio` for each of fd 0, 1 and 2, its
 * socket with it), or not (`error`), and exited.
 */
export type SpawnerReply =
  | { type: 'spawned'; id: number; pid: number }
  | { type: 'stdio'; id: number; fd: 0 | 1 | 2 }
  | { type: 'error'; id: number; message: string }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

const children = new Map<number, ChildProcess>();

function send(reply: SpawnerReply, handle?: Socket): void {
  // A send that fails (the server gone meanwhile) is not this process's end: its `disconnect` is.
  if (process.connected) process.send?.(reply, handle, undefined, () => {});
}

function start(request: Extract<SpawnerRequest, { type: 'spawn' }>): void {
  const { id } = request;
  let child: ChildProcess;
  try {
    // detached: the sandbox is a process group of its own, which kill() ends whole.
    child = spawn(request.command, request.args, {
      env: request.env,
      ...(request.uid !== undefined ? { uid: request.uid, gid: request.gid } : {}),
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
  } catch (error) {
    // Thrown rather than emitted (no memory to fork, bad arguments): this start fails, not the others.
    send({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
    return;
  }
  child.once('error', (error) => {
    if (child.pid !== undefined) return; // started: a failed kill, say; its exit is what counts
    send({ type: 'error', id, message: error.message });
  });
  if (child.pid === undefined) return; // not started: `error` follows
  children.set(id, child);
  // Nothing is read here: what the sandbox writes before its ends reach the server waits in them.
  for (const stream of [child.stdout, child.stderr])
    (stream as unknown as { _handle?: { readStop(): void } })._handle?.readStop();
  const filter = child.stdio[SECCOMP_FD] as Writable | null;
  filter?.on('error', () => {}); // bwrap gone before reading it: its exit says why
  filter?.end(Buffer.from(request.seccomp, 'base64'));
  send({ type: 'spawned', id, pid: child.pid });
  send({ type: 'stdio', id, fd: 0 }, child.stdin as unknown as Socket);
  send({ type: 'stdio', id, fd: 1 }, child.stdout as unknown as Socket);
  send({ type: 'stdio', id, fd: 2 }, child.stderr as unknown as Socket);
  child.once('exit', (code, signal) => {
    children.delete(id);
    send({ type: 'exit', id, code, signal });
  });
}

/**
 * Kills the whole sandbox: bwrap's inner process first (the driver, pid 1 of the sandbox's pid namespace, which ends
 * with it), then bwrap's process group and bwrap. Neither bwrap's death nor its group reaches the inner process for
 * sure: it leaves the group (`--new-session`) before it sets its parent-death signal, and a kill between the two left
 * it running without bwrap. The group still takes one cloned a moment ago, not yet listed as bwrap's child.
 */
function kill(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  for (const inner of childrenOf(pid))
    try {
      process.kill(inner, 'SIGKILL');
    } catch {} // gone already
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {} // the group is gone already
  child.kill('SIGKILL');
}

/** The children of process `pid` (Linux's /proc/<pid>/task/<pid>/children); none if it cannot be read. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The server's end of the channel closed (it exited, was killed, or let this process go): so do its sandboxes. */
function shutdown(): void {
  for (const child of children.values()) kill(child);
  process.exit(0);
}

process.on('message', (request: SpawnerRequest) => {
  if (request.type === 'spawn') start(request);
  else if (request.type === 'kill') {
    const child = children.get(request.id);
    if (child) kill(child);
  }
});
process.on('disconnect', shutdown);
// Node 20 loses `disconnect` when the channel ends while a handle sent waits for its acknowledgement (a sandbox's
// stdio in flight): `connected` is false all the same. Looked at four times a second, without keeping this alive.
setInterval(() => {
  if (!process.connected) shutdown();
}, 250).unref();
