// Reading a run's figures from its output, and the records: ledger.jsonl and results.tsv.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { looksOutOfMemory, readMetric } from '../lib/metrics';
import {
  appendExperiment,
  appendRejection,
  cleanDescription,
  experiments,
  LEDGER_FILE,
  readLedger,
  readResultsTsv,
  RESULTS_FILE,
  resultsLine,
} from '../lib/ledger';
import type { ExperimentRecord } from '../common/shared';
import { tempDir } from './helpers';

const SPEC = { name: 'val_bpb', direction: 'lower' as const };

test('readMetric: reads the summary block after the last "---" only', () => {
  const log = [
    'step 00100 | val_bpb: 9.5',
    'val_bpb: 3.2',
    '---',
    'val_bpb:          1.500000',
    '---',
    'val_bpb:          0.997900',
    'training_seconds: 300.1',
    'peak_vram_mb:     45060.2',
    '',
  ].join('\n');
  assert.equal(readMetric(log, SPEC), 0.9979);
  assert.equal(readMetric(log, { ...SPEC, name: 'peak_vram_mb' }), 45060.2);
});

test('readMetric: a number printed before the "---" does not count', () => {
  assert.equal(readMetric('val_bpb: 0.5\n---\ntraining_seconds: 300\n', SPEC), null);
  assert.equal(readMetric('val_bpb: 0.5\n---\n', SPEC), null);
  assert.equal(readMetric('---\nval_bpb_ema: 0.5\nmy_val_bpb: 0.4\n', SPEC), null, 'a longer name is another figure');
  assert.equal(readMetric('---\nval_bpb: nan\n', SPEC), null, 'nan is not a metric');
  assert.equal(readMetric('no summary at all, val_bpb: 0.7 inline\n', SPEC), null);
});

test('readMetric: a custom pattern reads its capture group, in the summary block only', () => {
  const spec = { ...SPEC, pattern: 'final bpb=([0-9.]+)' };
  assert.equal(readMetric('final bpb=2.0\n---\nresult: final bpb=1.25 (ema)\n', spec), 1.25);
  assert.equal(readMetric('final bpb=2.0\n---\nnothing here\n', spec), null);
  assert.equal(readMetric('---\nfinal bpb=1.5\nfinal bpb=1.25\n', spec), 1.25, 'the last match wins');
});

test('looksOutOfMemory: GPU and host out-of-memory messages', () => {
  assert.equal(looksOutOfMemory('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'), true);
  assert.equal(looksOutOfMemory('MemoryError'), true);
  assert.equal(looksOutOfMemory('OSError: [Errno 12] Cannot allocate memory'), true);
  assert.equal(looksOutOfMemory('step 10 | loss 3.0\n---\nval_bpb: 1.0\npeak_vram_mb: 2048.0'), false);
  assert.equal(looksOutOfMemory('RuntimeError: boom: the model diverged'), false);
});

// --------------------------------------------------------------------------------------- ledger

function record(over: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    tag: 'unit',
    experiment: 1,
    commit: '0123456789abcdef0123456789abcdef01234567',
    parent: 'f'.repeat(40),
    status: 'keep',
    outcome: 'ok',
    metric: 0.9979,
    bestBefore: 1.0,
    delta: -0.0021,
    memoryGb: 44.0039,
    description: 'raise LR',
    reason: 'improved',
    evidence: 'improved',
    runs: 1,
    seconds: 300.2,
    logPath: '/tmp/x.log',
    host: 'h',
    slot: 'cpu',
    costUsd: 0,
    fixOf: null,
    finishedAt: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

test('resultsLine: autoresearch format (7-char sha, 6 decimals, memory .1f, crash 0.000000 and 0.0)', () => {
  assert.equal(resultsLine(record()), '0123456\t0.997900\t44.0\tkeep\traise LR');
  assert.equal(
    resultsLine(record({ status: 'discard', metric: 1.23456789, memoryGb: 2.06 })),
    '0123456\t1.234568\t2.1\tdiscard\traise LR',
  );
  assert.equal(
    resultsLine(record({ status: 'crash', metric: 0.5, memoryGb: 44, description: 'double width' })),
    '0123456\t0.000000\t0.0\tcrash\tdouble width',
  );
  assert.equal(
    resultsLine(record({ status: 'crash', metric: null, memoryGb: 0 })),
    '0123456\t0.000000\t0.0\tcrash\traise LR',
  );
  assert.equal(resultsLine(record({ description: 'a\tb\nc' })).split('\t').length, 5);
});

test('cleanDescription: one line without tabs, bounded', () => {
  assert.equal(cleanDescription('  raise\tLR\r\nand  width\n'), 'raise LR and width');
  const long = cleanDescription('x'.repeat(500));
  assert.equal(long.length, 200);
  assert.ok(long.endsWith('...'));
});

test('appendExperiment: the same record twice gives one ledger row and one results.tsv row', () => {
  const dir = path.join(tempDir(), 'campaign');
  try {
    const r0 = record({ experiment: 0, commit: 'a'.repeat(40), description: 'baseline' });
    const r1 = record({ experiment: 1, commit: 'b'.repeat(40) });
    appendExperiment(dir, r0, 'val_bpb', 'log 0');
    appendExperiment(dir, r0, 'val_bpb', 'log 0');
    appendExperiment(dir, r1, 'val_bpb', 'log 1');
    appendExperiment(dir, r1, 'val_bpb', 'log 1');
    const rows = experiments(dir);
    assert.deepEqual(
      rows.map((r) => r.experiment),
      [0, 1],
    );
    assert.equal(rows[1].logTail, 'log 1');
    assert.deepEqual(
      { ...rows[1], kind: undefined, logTail: undefined },
      { ...r1, kind: undefined, logTail: undefined },
    );
    const tsv = readResultsTsv(dir);
    assert.deepEqual(tsv.header, ['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
    assert.deepEqual(
      tsv.rows.map((r) => r[0]),
      ['aaaaaaa', 'bbbbbbb'],
    );
    assert.equal(readFileSync(path.join(dir, RESULTS_FILE), 'utf8').split('\n').filter(Boolean).length, 3);
    // A retry after the ledger write but before the results.tsv write fills in only the missing row.
    const r2 = record({ experiment: 2, commit: 'c'.repeat(40) });
    appendFileSync(path.join(dir, LEDGER_FILE), `${JSON.stringify({ kind: 'experiment', ...r2, logTail: '' })}\n`);
    appendExperiment(dir, r2, 'val_bpb', '');
    assert.deepEqual(
      experiments(dir).map((r) => r.experiment),
      [0, 1, 2],
    );
    assert.deepEqual(
      readResultsTsv(dir).rows.map((r) => r[0]),
      ['aaaaaaa', 'bbbbbbb', 'ccccccc'],
    );
  } finally {
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

test('appendExperiment: a ledger whose last line was cut mid-write is repaired by the next append', () => {
  const dir = tempDir();
  try {
    const r0 = record({ experiment: 0, commit: 'a'.repeat(40) });
    const r1 = record({ experiment: 1, commit: 'b'.repeat(40) });
    const whole = JSON.stringify({ kind: 'experiment', ...r0, logTail: '' });
    const cut = JSON.stringify({ kind: 'experiment', ...r1, logTail: '' }).slice(0, 40);
    writeFileSync(path.join(dir, LEDGER_FILE), `${whole}\n${cut}`);
    assert.deepEqual(
      experiments(dir).map((r) => r.experiment),
      [0],
      'the cut line is skipped',
    );
    appendExperiment(dir, r1, 'val_bpb', '');
    assert.deepEqual(
      experiments(dir).map((r) => r.experiment),
      [0, 1],
      'the retried row is written whole',
    );
    const lines = readFileSync(path.join(dir, LEDGER_FILE), 'utf8').split('\n');
    assert.equal(lines.at(-1), '', 'ends with a newline');
    assert.equal(lines[1], cut, 'the cut line stays on a line of its own');
    assert.doesNotThrow(() => JSON.parse(lines[2]));
    appendExperiment(dir, r1, 'val_bpb', '');
    assert.equal(experiments(dir).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('appendRejection: keyed by (experiment, attempt)', () => {
  const dir = tempDir();
  try {
    const row = {
      tag: 'unit',
      experiment: 3,
      attempt: 0,
      description: 'edit prepare.py',
      reason: 'changes locked file(s): prepare.py',
      costUsd: 0.01,
      at: '2025-01-01T00:00:00Z',
    };
    appendRejection(dir, row);
    appendRejection(dir, row);
    appendRejection(dir, { ...row, attempt: 1 });
    appendRejection(dir, { ...row, attempt: 1 });
    appendRejection(dir, { ...row, experiment: 4 });
    const rows = readLedger(dir);
    assert.deepEqual(
      rows.map((r) => [r.kind, r.experiment, r.kind === 'rejected' ? r.attempt : -1]),
      [
        ['rejected', 3, 0],
        ['rejected', 3, 1],
        ['rejected', 4, 0],
      ],
    );
    assert.equal(experiments(dir).length, 0, 'rejections are not experiments');
    assert.equal(existsSync(path.join(dir, RESULTS_FILE)), false, 'nor results.tsv rows');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
