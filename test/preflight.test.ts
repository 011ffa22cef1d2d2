// Preflight against a real repository.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preflight } from '../activities/preflight';

test('preflight: no-op, locked file, file outside editable, Python syntax error are rejected; a valid edit passes', async () => {
  const config = { editable: ['train.py'], locked: ['prepare.py'], evaluate: { heldOutPaths: ['heldout'] } };
  const before = { 'train.py': 'WIDTH = 8\n', 'prepare.py': 'EVAL = 1\n' };
  const attempt = (files: Record<string, string>, atParent: Record<string, string | null> = before) =>
    preflight(files, before, atParent, config);
  assert.match((await attempt({}))!, /^no-op edit: the proposal changed nothing/);
  assert.match((await attempt({ 'train.py': 'WIDTH = 8\n' }))!, /^no-op edit/, 'rewriting the same bytes is a no-op');
  assert.equal(await attempt({ 'prepare.py': 'EVAL = 10\n' }), 'changes locked file(s): prepare.py');
  assert.equal(await attempt({ 'heldout/test.txt': 'easy\n' }), 'changes held-out data: heldout/test.txt');
  assert.equal(
    await attempt({ 'train.py': 'WIDTH = 9\n', 'program.md': 'new\n' }),
    'edits outside the editable files (train.py): program.md',
  );
  assert.equal(await attempt({ '../escape.py': 'X = 1\n' }), 'edit to a path outside the repository: ../escape.py');
  assert.match((await attempt({ 'train.py': 'WIDTH = 8 +* (\n' }))!, /^train\.py does not compile: .*SyntaxError/);
  assert.equal(await attempt({ 'train.py': 'WIDTH = 16\n' }), null);
  // A fix edits the crashed commit: back to the best's own code is a no-op too.
  assert.match(
    (await attempt({ 'train.py': 'WIDTH = 7\n' }, { 'train.py': 'WIDTH = 7\n', 'prepare.py': 'EVAL = 1\n' }))!,
    /^no-op edit: the result is identical to the best commit/,
  );
  // A rejection reason is bounded, however many paths a proposal names.
  const many = Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`${'d'.repeat(900)}/${i}.py`, 'X = 1\n']));
  const reason = (await attempt(many))!;
  assert.ok(
    reason.length <= 1000 && /\[cut: \d+ more characters\]$/.test(reason),
    `bounded with a marker (${reason.length} characters)`,
  );
});
