// A seccomp filter for sandboxed processes (bubblewrap loads it: `--seccomp FD`). Namespaces hide
// files and sockets, but a few kernel objects stay shared between sandboxes on one host, and two
// hostile processes running at the same time could talk through them:
//   - file locks (flock, fcntl locks) are per inode, and every sandbox sees the same /usr;
//   - inotify reports when a process opens or reads a file, any file it can see.
// The model process (it is shown the held-out inputs) takes no lock: the calls succeed and do
// nothing. No sandboxed process watches files. Neither can use another system-call table (32-bit
// or x32 calls on x86_64, 32-bit calls on arm64), where these numbers would be others.
// What no filter closes (CPU and memory pressure, timing) is in docs/harness.md.
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JSET_K = 0x45;
const RET_K = 0x06;
/** struct seccomp_data: nr at 0, arch at 4, args[1] (its low half, little-endian) at 24. */
const NR = 0;
const ARCH = 4;
const ARG1 = 24;
const X32_BIT = 0x40000000;
/** fcntl commands that take, test or lease a lock. */
const LOCK_COMMANDS = [5, 6, 7, 36, 37, 38, 1024, 1025];

interface Arch {
  audit: number;
  x32: boolean;
  watch: number[];
  flock: number;
  fcntl: number;
}

const ARCHES: Record<string, Arch> = {
  x64: { audit: 0xc000003e, x32: true, watch: [253, 254, 294], flock: 73, fcntl: 72 },
  arm64: { audit: 0xc00000b7, x32: false, watch: [26, 27], flock: 32, fcntl: 25 },
};

type Op = { code: number; k: number; jt?: string; jf?: string } | { label: string };

/** The filter as bytes (struct sock_filter[]), or null on an architecture it does not know. */
export function seccompProgram(opts: { noLocks: boolean }, arch = process.arch): Buffer | null {
  const a = ARCHES[arch];
  if (!a) return null;
  const ops: Op[] = [
    { code: LD_W_ABS, k: ARCH },
    { code: JEQ_K, k: a.audit, jf: 'foreign' },
    { code: LD_W_ABS, k: NR },
    ...(a.x32 ? [{ code: JSET_K, k: X32_BIT, jt: 'foreign' }] : []),
    ...a.watch.map((nr) => ({ code: JEQ_K, k: nr, jt: 'nosys' })),
    ...(opts.noLocks
      ? [
          { code: JEQ_K, k: a.flock, jt: 'pretend' },
          { code: JEQ_K, k: a.fcntl, jt: 'fcntl' },
        ]
      : []),
    { code: RET_K, k: RET_ALLOW },
    { label: 'fcntl' },
    { code: LD_W_ABS, k: ARG1 },
    ...LOCK_COMMANDS.map((cmd) => ({ code: JEQ_K, k: cmd, jt: 'pretend' })),
    { code: RET_K, k: RET_ALLOW },
    { label: 'pretend' },
    { code: RET_K, k: RET_ERRNO | 0 }, // returns 0: the lock "succeeds" and does nothing
    { label: 'nosys' },
    { code: RET_K, k: RET_ERRNO | ENOSYS },
    { label: 'foreign' },
    { code: RET_K, k: RET_ERRNO | EPERM },
  ];
  const at = new Map<string, number>();
  let n = 0;
  for (const op of ops) {
    if ('label' in op) at.set(op.label, n);
    else n += 1;
  }
  const buf = Buffer.alloc(n * 8);
  let i = 0;
  for (const op of ops) {
    if ('label' in op) continue;
    const jump = (label?: string) => (label ? at.get(label)! - i - 1 : 0);
    buf.writeUInt16LE(op.code, i * 8);
    buf.writeUInt8(jump(op.jt), i * 8 + 2);
    buf.writeUInt8(jump(op.jf), i * 8 + 3);
    buf.writeUInt32LE(op.k >>> 0, i * 8 + 4);
    i += 1;
  }
  return buf;
}
