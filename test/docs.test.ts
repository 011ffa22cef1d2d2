// The docs lead only where they are right. Every `nightlab <command>` and every flag that README.md
// and docs/*.md name, in a code block or a backticked `nightlab ...` invocation, exists in the CLI's
// command tree (buildProgram(), commander); every relative link between those pages resolves to a
// file, and to a heading where it names one; the README stays under 9,000 characters (`wc -c`).
// Flags of other tools (npm, tsx, docker, git) are not checked: only a command line whose program
// is `nightlab` (or `bin/nightlab.mjs`) is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { buildProgram } from '../cli/main';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README_MAX_BYTES = 9_000;
/** Options commander answers on every command without listing them in `options`. */
const HELP_FLAGS = ['--help', '-h'];
/** Words that may stand before the program in a command line. */
const WRAPPERS = new Set(['sudo', 'npx', 'exec', 'node', 'time', 'nohup', 'env']);
const PROGRAM = /^(?:\S*\/)?nightlab(?:\.mjs)?$/;

/** README.md and every page under docs/, relative to the repository root. */
function docFiles(): string[] {
  const docs = readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
  return ['README.md', ...docs.sort().map((f) => `docs/${f}`)];
}

/** Code blocks whose lines are command lines; others (yaml, ts, a text diagram) are not read as shell. */
const SHELL_BLOCKS = new Set(['', 'bash', 'sh', 'shell', 'console', 'zsh']);

interface Line {
  file: string;
  line: number;
  text: string;
  /** Inside a fenced code block (or its fence): the block's language, '' when it names none. */
  block: string | null;
}

function linesOf(file: string, text: string): Line[] {
  let fence: { mark: string; lang: string } | null = null;
  return text.split('\n').map((t, i) => {
    const m = /^\s*(```|~~~)\s*(\w*)/.exec(t);
    const opens = m !== null && fence === null;
    const closes = m !== null && fence !== null && m[1] === fence.mark;
    if (opens) fence = { mark: m[1], lang: m[2] };
    const block = fence?.lang ?? null;
    if (closes) fence = null;
    return { file, line: i + 1, text: t, block: opens || closes ? 'fence' : block };
  });
}

/** The shell text of a line: all of it in a shell block, else its backticked spans outside blocks. */
function codeSpans(l: Line): string[] {
  if (l.block !== null) return SHELL_BLOCKS.has(l.block) ? [l.text] : [];
  return [...l.text.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

/**
 * The command lines in a piece of shell text: quoted strings and comments dropped, split at `;`,
 * `&&`, `||`, `&` and `|` (except a `|` inside `[...]`, which separates alternatives in a synopsis).
 */
function commandLines(shell: string): string[][] {
  const text = shell.replace(/"[^"]*"|'[^']*'/g, '""').replace(/(^|\s)#.*$/, '$1');
  const out: string[][] = [];
  let depth = 0;
  let current = '';
  const flush = () => {
    const words = current.trim().split(/\s+/).filter(Boolean);
    if (words.length) out.push(words);
    current = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[') depth += 1;
    if (c === ']') depth = Math.max(0, depth - 1);
    if (c === ';' || c === '&' || (c === '|' && depth === 0)) {
      flush();
      continue;
    }
    current += c;
  }
  flush();
  return out;
}

/** The words after the program, when the command line runs `nightlab`; else null. */
function nightlabArgs(words: string[]): string[] | null {
  let i = 0;
  while (i < words.length && (WRAPPERS.has(words[i]) || /^[A-Z_][A-Z0-9_]*=/.test(words[i]) || words[i] === '--')) i++;
  return i < words.length && PROGRAM.test(words[i]) ? words.slice(i + 1) : null;
}

function flagsOf(cmd: Command): string[] {
  return cmd.options.flatMap((o) => [o.long, o.short]).filter((f): f is string => Boolean(f));
}

/** A command line's subcommands: the command it names and the words that name it, or the unknown word. */
function resolve(program: Command, args: string[]): { cmd: Command; path: string[]; unknown?: string; open?: true } {
  let cmd = program;
  const path: string[] = [];
  for (const word of args) {
    if (!cmd.commands.length || word.startsWith('-')) break;
    if (/^[<[]|\.\.\.$/.test(word)) return { cmd, path, open: true }; // a placeholder such as <command>
    const sub = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!sub && word === 'help') break; // commander's implicit `help [command]`
    if (!sub) return { cmd, path, unknown: word };
    cmd = sub;
    path.push(word);
  }
  return { cmd, path };
}

/** What is wrong with one `nightlab` command line: an unknown command, unknown flags. */
function checkInvocation(program: Command, args: string[]): string[] {
  const { cmd, path, unknown } = resolve(program, args);
  const name = ['nightlab', ...path].join(' ');
  if (unknown) return [`unknown command "${name} ${unknown}"`];
  const known = new Set([...HELP_FLAGS]);
  for (let c: Command | null = cmd; c; c = c.parent) flagsOf(c).forEach((f) => known.add(f));
  const problems: string[] = [];
  for (const word of args.slice(path.length)) {
    if (word === '--') break;
    const flag = /^\[?(--?[A-Za-z][\w-]*)/.exec(word)?.[1];
    if (flag && !known.has(flag)) problems.push(`unknown flag ${flag} of "${name}"`);
  }
  return problems;
}

/**
 * Every unknown command or flag in the given pages, as `file:line: problem`. A flag named alone in
 * prose (`--watch`) belongs to the last `nightlab` invocation of its paragraph or table row, if any.
 */
function checkCommands(program: Command, pages: { file: string; text: string }[]): string[] {
  const problems: string[] = [];
  for (const page of pages) {
    let context: string[] | null = null;
    for (const l of linesOf(page.file, page.text)) {
      if (l.block !== null || !l.text.trim() || l.text.trimStart().startsWith('|')) context = null;
      for (const span of codeSpans(l)) {
        for (const words of commandLines(span)) {
          const args = nightlabArgs(words);
          const alone = !args && context && l.block === null && /^--?[A-Za-z]/.test(words[0]);
          const line = args ?? (alone ? [...context!, ...words] : null);
          if (!line) continue;
          problems.push(...checkInvocation(program, line).map((p) => `${l.file}:${l.line}: ${p}`));
          // After `nightlab <command>`, a flag alone could be any command's.
          const named = args && resolve(program, args);
          if (named) context = named.open ? null : named.path;
        }
      }
    }
  }
  return problems;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string, text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const l of linesOf(file, text)) {
    const heading = l.block !== null ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(l.text)?.[1];
    if (!heading) continue;
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n ? `${base}-${n}` : base);
  }
  return anchors;
}

/** Every relative link of the given pages that names no file, or no heading of its file. */
function checkLinks(pages: { file: string; text: string }[]): string[] {
  const problems: string[] = [];
  for (const page of pages) {
    for (const l of linesOf(page.file, page.text)) {
      if (l.block !== null) continue;
      const prose = l.text.replace(/`[^`]*`/g, '');
      for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        const target = m[1];
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        const [file, anchor] = target.split('#');
        const resolved = file ? path.join(path.dirname(page.file), file) : page.file;
        if (!existsSync(path.join(ROOT, resolved))) {
          problems.push(`${l.file}:${l.line}: link to ${target}: no file ${resolved}`);
          continue;
        }
        if (anchor === undefined || !resolved.endsWith('.md')) continue;
        if (!anchorsOf(resolved, readFileSync(path.join(ROOT, resolved), 'utf8')).has(anchor)) {
          problems.push(`${l.file}:${l.line}: link to ${target}: no heading #${anchor} in ${resolved}`);
        }
      }
    }
  }
  return problems;
}

function pages(): { file: string; text: string }[] {
  return docFiles().map((file) => ({ file, text: readFileSync(path.join(ROOT, file), 'utf8') }));
}

test('every nightlab command and flag named in README.md and docs/ exists in the CLI', async () => {
  const program = await buildProgram();
  const problems = checkCommands(program, pages());
  assert.deepEqual(problems, [], `commands or flags the CLI does not have:\n${problems.join('\n')}`);
});

test('the docs check finds an unknown command or flag, and passes over other tools and placeholders', async () => {
  const program = await buildProgram();
  const page = {
    file: 'docs/example.md',
    text: [
      'Watch it with `nightlab watch nov27`, or `nightlab status nov27 --follow`.',
      'With `nightlab results nov27` (`--json`, or `--csv`) and `nightlab steer nov27`: `--note`.',
      '',
      'A flag alone with no nightlab before it in its paragraph: `--git-dir`; `nightlab <command>` takes `--json`.',
      '',
      '```bash',
      'nightlab start --config nightlab.yaml --tag nov27 --frobnicate   # a comment --not-a-flag',
      'npm ci --no-audit && npx tsc --noEmit',
      'TEMPORAL_ADDRESS=x:7233 nightlab status nov27 [--json | --watch]',
      '```',
      '`nightlab <command> --help`, `git log --notes=nightlab`, ~/.nightlab/campaigns, nightlab-gpu.',
    ].join('\n'),
  };
  assert.deepEqual(checkCommands(program, [page]), [
    'docs/example.md:1: unknown command "nightlab watch"',
    'docs/example.md:1: unknown flag --follow of "nightlab status"',
    'docs/example.md:2: unknown flag --csv of "nightlab results"',
    'docs/example.md:7: unknown flag --frobnicate of "nightlab start"',
  ]);
});

test('relative links between README.md and docs/ resolve to files and headings', () => {
  const problems = checkLinks(pages());
  assert.deepEqual(problems, [], problems.join('\n'));
  const broken = {
    file: 'docs/example.md',
    text: '[a](concepts.md#no-such-heading), [b](nowhere.md), [c](https://x.org/y)',
  };
  assert.deepEqual(checkLinks([broken]), [
    'docs/example.md:1: link to concepts.md#no-such-heading: no heading #no-such-heading in docs/concepts.md',
    'docs/example.md:1: link to nowhere.md: no file docs/nowhere.md',
  ]);
});

test('README.md stays under 9,000 characters', () => {
  const size = readFileSync(path.join(ROOT, 'README.md')).byteLength;
  assert.ok(size < README_MAX_BYTES, `README.md is ${size} bytes (wc -c); move detail into docs/`);
});
