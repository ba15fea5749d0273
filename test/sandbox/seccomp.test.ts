import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REFUSED_SYSCALLS, seccompFilter } from '../../src/sandbox/seccomp.ts';

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;

/**
 * Runs a compiled filter as the kernel would on one system call (the subset of classic BPF it uses: load a word of
 * `seccomp_data`, jump if equal or at least, return), so that the filter of an architecture this machine is not
 * can be checked too.
 */
function verdict(filter: Buffer, call: { arch: number; nr: number }): number {
  let accumulator = 0;
  for (let pc = 0; pc * 8 < filter.length; pc++) {
    const code = filter.readUInt16LE(pc * 8);
    const ifTrue = filter.readUInt8(pc * 8 + 2);
    const ifFalse = filter.readUInt8(pc * 8 + 3);
    const k = filter.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) accumulator = k === 0 ? call.nr : k === 4 ? call.arch : Number.NaN;
    else if (code === 0x15) pc += accumulator === k ? ifTrue : ifFalse;
    else if (code === 0x35) pc += accumulator >= k ? ifTrue : ifFalse;
    else if (code === 0x06) return k;
    else throw new Error(`unexpected opcode ${code} at ${pc}`);
  }
  throw new Error('the filter ran off its end');
}

describe('the seccomp filter', () => {
  const cases = {
    x64: {
      arch: 0xc000003e,
      refused: [29, 68, 319, 447, 248, 249, 250, 425, 426, 427, 323, 321, 298],
      allowed: [0, 1, 9, 30, 31, 56, 57, 59, 231, 435],
    },
    arm64: {
      arch: 0xc00000b7,
      refused: [194, 186, 279, 447, 217, 218, 219, 425, 426, 427, 282, 280, 241],
      allowed: [63, 64, 196, 197, 220, 221, 222, 435],
    },
  };

  for (const [name, { arch, refused, allowed }] of Object.entries(cases)) {
    it(`refuses ${REFUSED_SYSCALLS.join(', ')} on ${name} with EPERM and allows the rest`, () => {
      const filter = seccompFilter(name);
      for (const nr of refused) assert.equal(verdict(filter, { arch, nr }), EPERM, `${name} call ${nr}`);
      for (const nr of allowed) assert.equal(verdict(filter, { arch, nr }), ALLOW, `${name} call ${nr}`);
    });

    it(`refuses every call of another ABI than ${name}'s own`, () => {
      const filter = seccompFilter(name);
      // i386 (int 0x80 on x86_64) and 32-bit ARM: their own numbers for the same calls.
      for (const foreign of [0x40000003, 0x40000028])
        for (const nr of [0, 117, 356]) assert.equal(verdict(filter, { arch: foreign, nr }), EPERM);
      // x32: x86_64's numbers with bit 30 set.
      for (const nr of [0x40000000 | 319, 0x40000000 | 29, 0x40000000])
        assert.equal(verdict(filter, { arch, nr }), EPERM);
    });
  }

  it('is not built for an architecture it was not written for (the sandbox is then unavailable)', () => {
    assert.throws(() => seccompFilter('s390x'), /no seccomp filter is written for the s390x architecture/);
  });
});
