// The layering lint rule (eslint.config.js) is a guarantee, so it is tested: a workflow that imports a
// Node built-in or an I/O layer fails, a type-only import of an activity interface passes, and the
// dashboard may not reach into the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';

const eslint = new ESLint();

async function problems(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result.messages.map((m) => m.message);
}

test('the layering rule: workflows import no Node built-ins and no I/O layer; other layers keep their bounds', async () => {
  assert.match(
    (await problems('workflows/x.ts', "import { readFileSync } from 'node:fs';\n")).join('\n'),
    /no Node built-ins/,
  );
  assert.match((await problems('workflows/x.ts', "import fs from 'fs';\n")).join('\n'), /no Node built-ins/);
  assert.match(
    (await problems('workflows/x.ts', "import { git } from '../lib/git';\n")).join('\n'),
    /workflows\/ may import only/,
  );
  assert.deepEqual(
    await problems(
      'workflows/x.ts',
      "import type { GpuActivities } from '../gpu-worker/run';\nimport { SA } from '../common/shared';\n",
    ),
    [],
  );
  assert.match(
    (await problems('common/x.ts', "import { readFileSync } from 'node:fs';\n")).join('\n'),
    /common\/ does no I\/O/,
  );
  assert.deepEqual(await problems('common/x.ts', "import path from 'node:path';\n"), []);
  assert.match(
    (await problems('dashboard/x.ts', "import { x } from '../cli/format';\n")).join('\n'),
    /dashboard\/ may import only/,
  );
  assert.match(
    (await problems('lib/x.ts', "import { x } from '../client/live';\n")).join('\n'),
    /lib\/ may import only/,
  );
  assert.deepEqual(
    await problems('cli/x.ts', "import { x } from '../client/live';\nimport { readFileSync } from 'node:fs';\n"),
    [],
  );
});
