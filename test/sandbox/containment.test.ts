/**
 * What code in the sandbox must not be able to do: each case an attempt that must fail inside, with the event loop
 * watched while it runs and a check that the session still works after it.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SandboxError } from '../../src/sandbox/sandbox-error.ts';
import type { SandboxPool } from '../../src/sandbox/sandbox-pool.ts';
import type { CellResult, SandboxSession } from '../../src/sandbox/sandbox-session.ts';
import { EVENT_LOOP_BOUND_MS, startedPool, TEST_SETTINGS, watchEventLoop } from './support.ts';

const SECRET = `assistd-secret-${randomBytes(12).toString('hex')}`;

describe('the sandbox contains', () => {
  let pool: SandboxPool;
  let session: SandboxSession;
  let hostDir: string;

  before(async () => {
    process.env.ASSISTD_TEST_SANDBOX_SECRET = SECRET;
    hostDir = mkdtempSync(path.join(os.tmpdir(), 'assistd-containment-'));
    writeFileSync(path.join(hostDir, 'marker.txt'), 'host marker', { mode: 0o644 });
    pool = await startedPool();
    ({ session } = await pool.session('thread_containment'));
  });
  after(async () => {
    await pool.close();
    delete process.env.ASSISTD_TEST_SANDBOX_SECRET;
    rmSync(hostDir, { recursive: true, force: true });
  });

  /** Runs a nasty cell, asserting the event loop stayed responsive and that the session answers afterwards. */
  async function nasty(code: string, timeoutMs?: number): Promise<CellResult> {
    const { result, maxDelayMs } = await watchEventLoop(() =>
      session.runCell(code, timeoutMs === undefined ? {} : { timeoutMs }),
    );
    assert.ok(maxDelayMs < EVENT_LOOP_BOUND_MS, `the event loop was blocked for ${maxDelayMs} ms`);
    const next = await session.runCell('"alive"');
    assert.equal(next.logs, "'alive'\n", 'the next cell works');
    return result;
  }

  /** A cell printing one line per attempt: `name: refused <error>` or `name: DONE`. */
  function attempts(cases: Record<string, string>): string {
    return Object.entries(cases)
      .map(
        ([name, body]) =>
          `try:\n${body.replace(/^/gm, '    ')}\n    print(${JSON.stringify(name)} + ': DONE')\n` +
          `except BaseException as e:\n    print(${JSON.stringify(name)} + ': refused', type(e).__name__)`,
      )
      .join('\n');
  }

  function assertAllRefused(result: CellResult, names: string[]): void {
    for (const name of names) assert.match(result.logs, new RegExp(`^${name}: refused`, 'm'), result.logs);
    assert.doesNotMatch(result.logs, /: DONE/, result.logs);
  }

  it("keeps the host's files out of sight", async () => {
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const result = await nasty(
      attempts({
        marker: `open(${JSON.stringify(path.join(hostDir, 'marker.txt'))}).read()`,
        project: `open(${JSON.stringify(path.join(process.cwd(), 'package.json'))}).read()`,
        listing: `import os\nos.listdir(${JSON.stringify(process.cwd())})`,
        passwd: 'open("/etc/passwd").read()',
        shadow: 'open("/etc/shadow").read()',
        root_home: 'import os\nos.listdir("/root")',
      }),
    );
    assertAllRefused(result, ['marker', 'project', 'listing', 'passwd', 'shadow', 'root_home']);
    assert.ok(!result.logs.includes('host marker') && !result.logs.includes(hostPasswd.slice(0, 20)));
  });

  it("keeps the server's environment secret (os.environ and every /proc/*/environ)", async () => {
    const result = await nasty(
      [
        'import os',
        'print(dict(os.environ))',
        'for pid in ["self", *[p for p in os.listdir("/proc") if p.isdigit()]]:',
        '    try:',
        '        print(pid, open(f"/proc/{pid}/environ", "rb").read())',
        '    except OSError as e:',
        '        print(pid, "unreadable", e)',
      ].join('\n'),
    );
    assert.match(result.logs, /^1 b'/m, 'bwrap’s pid 1 environ was read');
    assert.match(result.logs, /^self b'.*PATH=\/usr\/bin:\/bin/m);
    assert.ok(!result.logs.includes(SECRET), 'the secret leaked');
    assert.ok(!result.logs.includes('ASSISTD_TEST_SANDBOX_SECRET'));
  });

  it('has no network: not the host’s PostgreSQL on 127.0.0.1:5432, no DNS', async () => {
    const hostListens = await new Promise<boolean>((resolve) => {
      const socket = net.connect(5432, '127.0.0.1', () => resolve(true)).on('error', () => resolve(false));
      socket.setTimeout(2_000, () => resolve(false));
      socket.unref();
      socket.once('connect', () => socket.destroy());
    });
    const result = await nasty(
      attempts({
        postgres: 'import socket\nsocket.create_connection(("127.0.0.1", 5432), timeout=3).close()',
        dns: 'import socket\nsocket.getaddrinfo("example.com", 443)',
        outside: 'import socket\nsocket.create_connection(("1.1.1.1", 53), timeout=3).close()',
      }) + '\nimport socket\nprint(sorted(name for _, name in socket.if_nameindex()))',
    );
    assertAllRefused(result, ['postgres', 'dns', 'outside']);
    assert.match(result.logs, /^\['lo'\]$/m, 'only a loopback of its own');
    if (!hostListens) process.stderr.write('note: nothing listens on 127.0.0.1:5432 on this host\n');
  });

  it('keeps the system read-only, with no way to remount or gain privileges', async () => {
    const result = await nasty(
      attempts({
        usr: 'open("/usr/evil", "w")',
        etc: 'open("/etc/evil", "w")',
        root: 'open("/evil", "w")',
        dev: 'open("/dev/evil", "w")',
        proc_sys: 'open("/proc/sys/kernel/hostname", "w").write("evil")',
        remount:
          'import subprocess\nsubprocess.run(["mount", "-o", "remount,rw", "/usr"], check=True, capture_output=True)',
        userns: 'import subprocess\nsubprocess.run(["unshare", "-Urm", "true"], check=True, capture_output=True)',
        setuid: 'import os\nos.setuid(0)',
      }),
    );
    assertAllRefused(result, ['usr', 'etc', 'root', 'dev', 'proc_sys', 'remount', 'userns', 'setuid']);
  });

  it('has no process outside its limits: the driver is pid 1, and no other process can be ptraced into', async () => {
    // Before, bwrap's own init was pid 1, with no limits: code ptrace'd it (same uid) and made it map 4 GB.
    const result = await nasty(
      [
        'import ctypes, os, resource, subprocess',
        'print("pid", os.getpid())',
        'child = subprocess.Popen(["sleep", "5"])',
        // Every process it can see (itself and its child) has the memory limit: none is there to be ptrace'd.
        'pids = [p for p in os.listdir("/proc") if p.isdigit()]',
        'limited = [p for p in pids if "Max address space" in open(f"/proc/{p}/limits").read()',
        '           and "unlimited" not in [l for l in open(f"/proc/{p}/limits") if l.startswith("Max address space")][0]]',
        'print("processes", len(pids), "limited", len(limited))',
        'libc = ctypes.CDLL(None, use_errno=True)',
        'print("ptrace pid1", "DONE" if libc.ptrace(16, 1, None, None) == 0 else "refused")  # PTRACE_ATTACH',
        'child.kill(); child.wait()',
      ].join('\n'),
    );
    assert.match(result.logs, /^pid 1$/m, result.logs);
    assert.match(result.logs, /^processes 2 limited 2$/m, result.logs);
    assert.match(result.logs, /^ptrace pid1 refused$/m, result.logs);
  });

  it('contains a fork bomb: the host and other sessions can still start processes', async () => {
    const other = (await pool.session('thread_containment_other')).session;
    const bomb = session.runCell(
      'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass',
      {
        timeoutMs: 3_000,
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    execFileSync('/bin/true'); // the host
    const beside = await other.runCell('import subprocess\nsubprocess.run(["true"]).returncode');
    assert.equal(beside.logs, '0\n', 'another session forks while the bomb runs');
    const { result, maxDelayMs } = await watchEventLoop(() => bomb);
    assert.ok(maxDelayMs < EVENT_LOOP_BOUND_MS, `the event loop was blocked for ${maxDelayMs} ms`);
    assert.ok(result.outcome === 'timeout' || result.outcome === 'killed', result.outcome);
    const next = await session.runCell('import subprocess\nsubprocess.run(["true"]).returncode');
    assert.equal(next.logs, '0\n', 'the session forks again');
    const left = await session.runCell('import os\nsorted(int(p) for p in os.listdir("/proc") if p.isdigit())[2:]');
    assert.equal(left.logs, '[]\n', 'only the sandbox’s init and the driver remain');
  });

  it('stops a 20 GB allocation with MemoryError', async () => {
    const result = await nasty('data = bytearray(20 * 1024**3)');
    assert.equal(result.outcome, 'error');
    assert.match(result.logs, /MemoryError/);
    const numpy = await nasty('import numpy\nnumpy.ones(20 * 1024**3 // 8)');
    assert.match(numpy.logs, /MemoryError|Unable to allocate/);
  });

  it('refuses the memory RLIMIT_AS does not count: SysV shared memory and queues, memfds', async () => {
    // Without the seccomp filter, a loop of shmget/shmat/memset/shmdt held 4 GiB of the host under a 2 GiB RLIMIT_AS,
    // still held after the cell ended; memfds filled with write() are never mapped, so never counted either.
    const call = (name: string, args: string) =>
      `import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.${name}(${args}) < 0:\n` +
      '    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))';
    const x32 = process.arch === 'x64' ? 0x40000000 | 319 : 0x40000000 | 279;
    const result = await nasty(
      attempts({
        shmget: call('shmget', '0, ctypes.c_size_t(256 << 20), 0o1600'),
        msgget: call('msgget', '0, 0o1600'),
        memfd_create: 'import os\nos.memfd_create("hold")',
        memfd_secret: call('syscall', '447, 0'),
        x32_memfd: call('syscall', `${x32}, b"hold", 0`),
      }),
    );
    assertAllRefused(result, ['shmget', 'msgget', 'memfd_create', 'memfd_secret', 'x32_memfd']);
    assert.match(result.logs, /^shmget: refused PermissionError/m, 'refused by the filter (EPERM)');
    assert.match(result.logs, /^memfd_create: refused PermissionError/m);
  });

  it('refuses the keyrings it would share with the server, and io_uring, userfaultfd, bpf, perf_event_open', async () => {
    // bwrap starts no session keyring of its own: a key added here was read by the host process whose keyring it was.
    const call = (number: number, args: string) =>
      `import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.syscall(${number}${args}) < 0:\n` +
      '    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))';
    const n =
      process.arch === 'x64'
        ? { addKey: 248, keyctl: 250, userfaultfd: 323, bpf: 321, perf: 298 }
        : { addKey: 217, keyctl: 219, userfaultfd: 282, bpf: 280, perf: 241 };
    const result = await nasty(
      attempts({
        add_key: call(n.addKey, ', b"user", b"x", b"data", 4, ctypes.c_long(-3)'),
        keyctl: call(n.keyctl, ', 0, ctypes.c_long(-3), 0'),
        io_uring_setup: call(425, ', 8, ctypes.create_string_buffer(120)'),
        userfaultfd: call(n.userfaultfd, ', 1'),
        bpf: call(n.bpf, ', 0, ctypes.create_string_buffer(128), 128'),
        perf_event_open: call(n.perf, ', ctypes.create_string_buffer(128), 0, -1, -1, 0'),
      }),
    );
    const names = ['add_key', 'keyctl', 'io_uring_setup', 'userfaultfd', 'bpf', 'perf_event_open'];
    assertAllRefused(result, names);
    for (const name of names) assert.match(result.logs, new RegExp(`^${name}: refused PermissionError`, 'm'), name);
  });

  it('interrupts an infinite loop at its timeout and keeps the variables', async () => {
    await session.runCell('before_loop = 7');
    const result = await nasty('while True:\n    pass', 1_000);
    assert.equal(result.outcome, 'timeout');
    assert.equal((await session.runCell('before_loop')).logs, '7\n');
  });

  it('kills a loop in C that never sees the interrupt, and restarts the session', async () => {
    await session.runCell('before_c_loop = 1');
    const result = await nasty('import re\nre.match(r"(a+)+$", "a" * 64 + "b")', 500);
    assert.equal(result.outcome, 'killed');
    assert.match((await session.runCell('before_c_loop')).logs, /NameError/);
  });

  it('stops a 10 GB file at RLIMIT_FSIZE and the disk at its tmpfs size', async () => {
    const result = await nasty(
      attempts({
        big_file:
          'chunk = b"\\0" * (1 << 24)\nwith open("/mnt/data/big", "wb") as f:\n    for _ in range(640):\n        f.write(chunk)',
        big_tmp: 'import subprocess\nsubprocess.run("head -c 10G /dev/zero > /tmp/big", shell=True, check=True)',
        fill_data:
          'chunk = b"\\0" * (1 << 24)\nfor i in range(40):\n    with open(f"/mnt/data/part{i}", "wb") as f:\n        f.write(chunk)',
        fill_shm: 'chunk = b"\\0" * (1 << 24)\nfor i in range(40):\n    open(f"/dev/shm/part{i}", "wb").write(chunk)',
      }),
    );
    assertAllRefused(result, ['big_file', 'big_tmp', 'fill_data', 'fill_shm']);
    assert.match(result.logs, /^big_file: refused OSError/m);
    const usage = await session.runCell('import shutil\nshutil.disk_usage("/mnt/data").used <= 96 * 1024**2');
    assert.equal(usage.logs, 'True\n');
    // Emptied for the tests that follow, /tmp too: left full, a later cell's write there fails (ENOSPC).
    await session.runCell(
      'import glob, os\nfor f in glob.glob("/mnt/data/*") + glob.glob("/dev/shm/*") + glob.glob("/tmp/big"): os.remove(f)',
    );
  });

  it('caps 100 MB of output', async () => {
    const rssBefore = process.memoryUsage().rss;
    const result = await nasty('import sys\nfor _ in range(100):\n    sys.stdout.write("z" * (1 << 20))');
    assert.ok(result.logs.length <= 20_200);
    assert.match(result.logs, /…\[output truncated: [\d,]+ more characters\]/);
    assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024);
  });

  it('refuses symlinks, FIFOs and directories in /mnt/data, without opening them, never reading host content', async () => {
    const made = await session.runCell(
      [
        'import os',
        'os.symlink("/etc/passwd", "/mnt/data/passwd")',
        'os.symlink("/etc", "/mnt/data/etc")',
        'os.symlink("/proc/1/environ", "/mnt/data/environ")',
        'os.mkfifo("/mnt/data/fifo")',
        'os.mkdir("/mnt/data/dir")',
        'open("/mnt/data/dir/real.txt", "w").write("real")',
      ].join('\n'),
    );
    assert.equal(made.outcome, 'ok', made.logs);
    const refusals: Array<[string, RegExp]> = [
      ['passwd', /passwd is a symbolic link/],
      ['etc/passwd', /etc is not a directory/],
      ['environ', /environ is a symbolic link/],
      ['fifo', /fifo is not a regular file/],
      ['dir', /dir is not a regular file/],
    ];
    const { maxDelayMs } = await watchEventLoop(async () => {
      // A FIFO opened for reading would wait for a writer for ever: each is refused without being opened.
      for (const [name, message] of refusals) {
        await assert.rejects(session.readFile(name, 1 << 20), (error: unknown) => {
          assert.ok(error instanceof SandboxError);
          assert.match(error.message, message);
          assert.doesNotMatch(error.message, /root:/);
          return true;
        });
      }
      await assert.rejects(session.writeFile('passwd', new Uint8Array([1])), /symbolic link/);
      await assert.rejects(session.writeFile('fifo', new Uint8Array([1])), /not a regular file/);
    });
    assert.ok(maxDelayMs < EVENT_LOOP_BOUND_MS);
    assert.equal(new TextDecoder().decode(await session.readFile('dir/real.txt', 10)), 'real');
    assert.deepEqual(
      (await session.listFiles()).map((f) => f.name),
      ['dir/real.txt'],
    );
  });

  it("has a /tmp of its own: what a cell writes there is not in the host's /tmp", async () => {
    // Without its own tmpfs on /tmp (a bind of the host's instead), a cell could plant files where the server and
    // every other host process look for temporary files, and read or replace theirs (hostDir is one).
    const name = `assistd-containment-${randomBytes(8).toString('hex')}`;
    const result = await nasty(
      `with open("/tmp/${name}", "w") as f:\n    f.write("inside")\nprint("own /tmp", open("/tmp/${name}").read())\n` +
        attempts({ host_dir: `open(${JSON.stringify(path.join(hostDir, 'planted'))}, "w").write("planted")` }),
    );
    assert.match(result.logs, /^own \/tmp inside$/m, 'the cell writes its own /tmp');
    assertAllRefused(result, ['host_dir']);
    for (const dir of new Set([os.tmpdir(), '/tmp'])) assert.ok(!existsSync(path.join(dir, name)), `in ${dir}`);
    assert.ok(!existsSync(path.join(hostDir, 'planted')));
  });

  it('signals no host process and reaches no abstract unix socket: its pid and network namespaces are its own', async () => {
    // Without a pid namespace a cell signals every process of its host uid: the other sessions (all run as that uid)
    // and, when the server is not root, the server itself; kill(-1) is how the driver clears a cell's strays.
    // Abstract unix sockets are not files: only the network namespace separates them (a bus or agent listening on
    // one would otherwise take the cell's connections), and the host here listens on one for the cell to find.
    const address = `\0assistd-test-${randomBytes(8).toString('hex')}`;
    const server = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ path: address }, resolve));
    // Node 20 binds an abstract name padded with NULs to the whole sun_path (108 bytes), Node 22 and later the name
    // alone: only the exact name bound connects, so both are tried.
    const connect = [
      'import socket',
      'def reach(address):',
      '    try:',
      '        socket.socket(socket.AF_UNIX).connect(address)',
      '        return True',
      '    except ConnectionRefusedError:',
      '        return False',
      `name = ${JSON.stringify(address)}.encode()`,
      'if not (reach(name) or reach(name.ljust(108, b"\\0"))):',
      '    raise ConnectionRefusedError(111, "Connection refused")',
    ].join('\n');
    try {
      // The same code run on the host connects: the cell's refusal is the namespace's doing, not a wrong address.
      const { stdout } = await promisify(execFile)(TEST_SETTINGS.python, ['-c', `${connect}\nprint("connected")`]);
      assert.equal(stdout, 'connected\n');
      const result = await nasty(
        attempts({
          signal_test: `import os\nos.kill(${process.pid}, 0)`,
          signal_any: 'import os\nos.kill(-1, 0)',
          abstract_socket: connect,
        }),
      );
      assert.match(result.logs, /^signal_test: refused ProcessLookupError$/m, result.logs);
      assert.match(result.logs, /^signal_any: refused ProcessLookupError$/m, 'no process but its own pid 1');
      assert.match(result.logs, /^abstract_socket: refused (ConnectionRefusedError|FileNotFoundError)$/m, result.logs);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('gains no privileges: no new privileges, no capabilities, and a setuid binary runs as the caller', async (t) => {
    // A setuid-root binary that took effect inside would give the cell root over all it can reach, and the means to
    // undo its mounts. Three things each stop it: bwrap's no_new_privs, the nosuid flag of its mounts, and a user
    // namespace in which root is not mapped; the exec below gains root only with all three gone, so the first two
    // are checked on their own.
    const result = await nasty(
      [
        'import os, subprocess',
        'for line in open("/proc/self/status"):',
        '    if line.startswith(("NoNewPrivs", "CapEff", "CapPrm", "CapBnd")):',
        '        print(line, end="")',
        'for binary in ("/usr/bin/su", "/usr/bin/mount"):',
        '    if not (os.path.exists(binary) and os.stat(binary).st_mode & 0o4000):',
        '        continue',
        '    print(binary, "nosuid" if os.statvfs(binary).f_flag & os.ST_NOSUID else "suid allowed")',
        '    child = subprocess.Popen([binary, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)',
        // Exited but not yet reaped: its last credentials are still in /proc, the setuid program unchanged by any
        // later drop of privileges (`--version` drops none).
        '    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)',
        '    uids = next(l for l in open(f"/proc/{child.pid}/status") if l.startswith("Uid:")).split()[1:]',
        '    child.wait()',
        '    print(binary, "ran as", *uids)',
      ].join('\n'),
    );
    assert.match(result.logs, /^NoNewPrivs:\t1$/m, result.logs);
    for (const set of ['CapEff', 'CapPrm', 'CapBnd']) assert.match(result.logs, new RegExp(`^${set}:\\t0+$`, 'm'));
    const ran = [...result.logs.matchAll(/^(\S+) ran as (.*)$/gm)];
    if (ran.length === 0) t.diagnostic('no setuid su or mount inside: the exec of a setuid binary was not tried');
    for (const [, binary, uids] of ran) {
      assert.match(result.logs, new RegExp(`^${binary} nosuid$`, 'm'), `${binary}'s mount is nosuid`);
      assert.ok(!uids?.split(' ').includes('0'), `${binary} ran with uids ${uids}: it gained root`);
    }
  });

  it('cannot raise its limits (core dumps, CPU, memory, processes, files) and stops at 1,024 open files', async () => {
    // Each hard limit is the only bound on what it limits: one raised would let a cell dump cores (with the host's
    // core_pattern, into /mnt/data or to the host's handler), spin or allocate past its session's share, or hold open
    // files by the tens of thousands (the host's own limit, which Node raises, would be the only one left).
    const raise = (limit: string) =>
      `import resource\nhard = resource.getrlimit(resource.${limit})[1]\n` +
      `resource.setrlimit(resource.${limit}, (hard + 1, hard + 1))`;
    const result = await nasty(
      attempts({
        core: 'import resource\nresource.setrlimit(resource.RLIMIT_CORE, (1 << 30, 1 << 30))',
        cpu: raise('RLIMIT_CPU'),
        memory: raise('RLIMIT_AS'),
        processes: raise('RLIMIT_NPROC'),
        file_size: raise('RLIMIT_FSIZE'),
        open_files: raise('RLIMIT_NOFILE'),
      }) +
        [
          '\nimport errno',
          'files = []',
          'try:',
          '    while len(files) < 100_000:',
          '        files.append(open("/dev/null"))',
          'except OSError as e:',
          '    print("opening refused", errno.errorcode[e.errno])',
          'print("opened", len(files))',
          'for file in files:',
          '    file.close()',
        ].join('\n'),
    );
    const names = ['core', 'cpu', 'memory', 'processes', 'file_size', 'open_files'];
    for (const name of names) assert.match(result.logs, new RegExp(`^${name}: refused ValueError$`, 'm'), result.logs);
    assert.match(result.logs, /^opening refused EMFILE$/m, result.logs);
    const opened = Number(/^opened (\d+)$/m.exec(result.logs)?.[1]);
    assert.ok(opened > 0 && opened < 1024, `${opened} files opened`);
  });

  it('kills a session that spins past its CPU time, even in a thread left running after its cell', async () => {
    // A thread outlives its cell, out of reach of the cell's timeout: RLIMIT_CPU alone bounds the CPU it takes from
    // the host. The driver is its pid namespace's init, to which the kernel drops a SIGXCPU: the hard limit's
    // SIGKILL, at cpuSeconds, is what ends it. Without the limit, the join below would wait for the cell's timeout
    // and end as 'timeout', the thread still spinning.
    // A minute of wall time for 3 s of CPU: room for a loaded machine before the cell's own timeout ends it instead.
    // The limit counts the session's start too (Python with numpy, pandas and matplotlib): at 1 s, a start on a
    // loaded machine (CI with other work going) was killed before the pool was up.
    const cpuPool = await startedPool({ cpuSeconds: 3, cellTimeoutMs: 60_000 });
    try {
      const { session: spinning } = await cpuPool.session('thread_containment_cpu');
      const started = await spinning.runCell(
        [
          'import threading',
          'before_spin = 1',
          'def spin():',
          '    while True:',
          '        pass',
          'spinner = threading.Thread(target=spin, daemon=True)',
          'spinner.start()',
        ].join('\n'),
      );
      assert.equal(started.outcome, 'ok', started.logs);
      const joined = await spinning.runCell('spinner.join()');
      assert.equal(joined.outcome, 'killed', joined.logs);
      assert.equal(joined.killed, 'ended', 'ended by its limit, not by the host after a timeout');
      assert.match(joined.logs, /^\[The Python process ended/, 'ended by its limit, not by the host after a timeout');
      assert.match((await spinning.runCell('before_spin')).logs, /NameError/, 'a fresh session');
    } finally {
      await cpuPool.close();
    }
  });

  it('kills a session whose code forges a protocol message, without taking it as a reply', async () => {
    // The cell runs in the driver's process and can call its `send`. The host takes replies only to the request in
    // flight: else a reply forged for the next request would be taken as its answer (a cell's output, a file's
    // bytes). Anything else ends the session, and only it: the server and the next cell go on.
    await session.runCell('before_forgery = 1');
    const result = await nasty(
      [
        'import sys',
        'frame = sys._getframe()',
        'while frame.f_code.co_name != "run_cell":',
        '    frame = frame.f_back',
        'request, send = frame.f_locals["request"], frame.f_globals["send"]',
        'send({"id": request["id"] + 1, "type": "result", "outcome": "ok", "logs": "forged"})',
        'print("sent")',
      ].join('\n'),
    );
    assert.equal(result.outcome, 'killed', result.logs);
    assert.match(result.logs, /protocol violation: an unexpected 'result' message/);
    const next = await session.runCell('before_forgery');
    assert.match(next.logs, /NameError/, 'a fresh session');
    assert.doesNotMatch(next.logs, /forged/);
  });
});
