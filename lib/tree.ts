// Trees of files written out of git's object store and hashed back off the disk, by Nightlab's own
// code: no checkout, no `.git` in the directory, no filter, hook or attribute of git takes part.
// The GPU worker builds each run's workspace this way, and the command proposer's copy of the code;
// the locked-file guard compares what is on disk with the object ids taken at `start`.
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Git } from './git';

export interface TreeEntry {
  /** 100644, 100755, 120000 (symlink), 040000 (tree), 160000 (submodule). */
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  oid: string;
  path: string;
}

/** Blobs fetched per `cat-file --batch` call while writing a tree. */
const BATCH = 256;

/** True when `file` is one of `paths` or lies under one of them. */
export function covers(paths: string[], file: string): boolean {
  return paths.some((p) => {
    const dir = p.replace(/\/+$/, '');
    return file === dir || file.startsWith(`${dir}/`);
  });
}

/** `sha`'s entries: every file (recursive), or the named paths themselves (not their contents). */
export async function listTree(
  g: Git,
  sha: string,
  opts: { paths?: string[]; recursive?: boolean } = {},
): Promise<TreeEntry[]> {
  const paths = (opts.paths ?? []).map((p) => p.replace(/\/+$/, ''));
  if (opts.paths && !paths.length) return [];
  const out = await g.text([
    'ls-tree',
    ...(opts.recursive === false ? [] : ['-r']),
    '-z',
    '--full-tree',
    sha,
    ...(paths.length ? ['--', ...paths] : []),
  ]);
  return out
    .split('\0')
    .filter(Boolean)
    .map((line) => {
      const tab = line.indexOf('\t');
      const [mode, type, oid] = line.slice(0, tab).split(' ');
      return { mode, type: type as TreeEntry['type'], oid, path: line.slice(tab + 1) };
    });
}

/** The object ids of `paths` at `sha` (a file's blob, a directory's tree): what the guard checks. */
export async function guardOf(g: Git, sha: string, paths: string[]): Promise<Record<string, string>> {
  const guard: Record<string, string> = {};
  for (const e of await listTree(g, sha, { paths, recursive: false })) guard[e.path] = e.oid;
  return guard;
}

/**
 * Writes `sha`'s files into `dir` (which holds nothing of them yet), leaving out the paths under
 * `omit`. Modes are git's (an executable stays executable); symlinks are made as symlinks.
 */
export async function writeTree(g: Git, sha: string, dir: string, omit: string[] = []): Promise<TreeEntry[]> {
  const entries = (await listTree(g, sha)).filter((e) => !covers(omit, e.path));
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < entries.length; i += BATCH) {
    const batch = entries.slice(i, i + BATCH);
    const blobs = batch.filter((e) => e.type === 'blob');
    const contents = await readBlobs(
      g,
      blobs.map((e) => e.oid),
    );
    let b = 0;
    for (const e of batch) {
      const file = path.join(dir, e.path);
      mkdirSync(path.dirname(file), { recursive: true });
      if (e.type !== 'blob') {
        mkdirSync(file, { recursive: true }); // a submodule: an empty directory, as git leaves it
        continue;
      }
      const content = contents[b++];
      if (e.mode === '120000') symlinkSync(content.toString('utf8'), file);
      else writeFileSync(file, content, { mode: e.mode === '100755' ? 0o755 : 0o644 });
    }
  }
  return entries;
}

/** Blob contents by object id, in order, from one `cat-file --batch`. */
async function readBlobs(g: Git, oids: string[]): Promise<Buffer[]> {
  if (!oids.length) return [];
  const out = await g.bytes(['cat-file', '--batch'], oids.map((o) => `${o}\n`).join(''));
  const blobs: Buffer[] = [];
  let at = 0;
  for (const oid of oids) {
    const eol = out.indexOf(0x0a, at);
    const [, type, size] = out.subarray(at, eol).toString('utf8').split(' ');
    if (type !== 'blob') throw new Error(`object ${oid} is not a blob (${type ?? 'missing'})`);
    at = eol + 1;
    blobs.push(out.subarray(at, at + Number(size)));
    at += Number(size) + 1; // the content, then a newline
  }
  return blobs;
}

/**
 * Empties `dir` but for the paths in `keep` (relative; their parent directories stay too): what a
 * run left behind goes, whatever it is (untracked, ignored, bytecode, a `.git`, read-only folders).
 */
export function wipeDir(dir: string, keep: string[] = []): void {
  mkdirSync(dir, { recursive: true });
  const kept = keep.map((k) => path.resolve(dir, k));
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (kept.includes(p)) continue;
      if (kept.some((k) => k.startsWith(`${p}/`)) && lstatSync(p).isDirectory()) walk(p);
      else removeAll(p);
    }
  };
  walk(dir);
}

/** rm -rf, also through folders a process made unwritable. */
export function removeAll(p: string): void {
  try {
    rmSync(p, { recursive: true, force: true });
  } catch {
    makeWritable(p);
    rmSync(p, { recursive: true, force: true });
  }
}

function makeWritable(p: string): void {
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  chmodSync(p, 0o700);
  for (const name of readdirSync(p)) makeWritable(path.join(p, name));
}

/** git's id of what is on disk at `p` (a file's blob, a directory's tree), or null when nothing is there. */
export function diskId(p: string, algorithm: 'sha1' | 'sha256'): string | null {
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return null;
  }
  // Whatever cannot be read whole (too large, unreadable, a name that is not UTF-8) is no committed content.
  try {
    if (st.isSymbolicLink()) return objectId('blob', Buffer.from(readlinkSync(p)), algorithm);
    if (st.isFile())
      return st.size > MAX_HASHED_BYTES ? `too large: ${p}` : objectId('blob', readFileSync(p), algorithm);
    if (st.isDirectory()) return treeId(p, algorithm);
  } catch (e) {
    return `unreadable: ${p}: ${(e as Error).message}`;
  }
  return `not a file: ${p}`; // a fifo, a socket, a device: never what was committed
}

/** A guarded or read-back file larger than this is taken as changed, unread. */
const MAX_HASHED_BYTES = 1024 * 1024 * 1024;

/** A directory's git tree id, computed from the disk (empty folders are left out, as git does). */
function treeId(dir: string, algorithm: 'sha1' | 'sha256'): string | null {
  const entries: { name: string; mode: string; id: string; sortKey: string }[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    const id = diskId(p, algorithm);
    if (id === null) continue;
    if (st.isDirectory()) entries.push({ name, mode: '40000', id, sortKey: `${name}/` });
    else
      entries.push({
        name,
        mode: st.isSymbolicLink() ? '120000' : st.mode & 0o100 ? '100755' : '100644',
        id,
        sortKey: name,
      });
  }
  if (!entries.length) return null;
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.sortKey), Buffer.from(b.sortKey)));
  const body = Buffer.concat(
    entries.map((e) =>
      Buffer.concat([
        Buffer.from(`${e.mode} ${e.name}\0`),
        /^[0-9a-f]+$/.test(e.id) ? Buffer.from(e.id, 'hex') : Buffer.from(e.id),
      ]),
    ),
  );
  return objectId('tree', body, algorithm);
}

function objectId(type: 'blob' | 'tree', content: Buffer, algorithm: 'sha1' | 'sha256'): string {
  return createHash(algorithm).update(`${type} ${content.length}\0`).update(content).digest('hex');
}

/** The guarded paths whose content on disk under `dir` is not the one recorded (changed, deleted or added). */
export function guardChanges(dir: string, guard: Record<string, string>): string[] {
  const changed: string[] = [];
  for (const [p, oid] of Object.entries(guard)) {
    // Every folder on the way must be a real one: a symlinked parent could show another copy.
    const parts = p.split('/');
    const detour = parts.slice(0, -1).some((_, i) => !isRealDir(path.join(dir, ...parts.slice(0, i + 1))));
    const now = detour ? 'through a symlink' : diskId(path.join(dir, p), oid.length === 64 ? 'sha256' : 'sha1');
    if (now === null) changed.push(`${p} (deleted)`);
    else if (now !== oid) changed.push(p);
  }
  return changed;
}

function isRealDir(p: string): boolean {
  try {
    return lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}
