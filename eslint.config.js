// The layering, as a lint rule: each folder names the folders it may import from. A workflow runs in
// Temporal's deterministic sandbox, so it may not import Node built-ins or any layer that does I/O
// (type-only imports are erased and allowed). Run with `npm run lint`; the test command runs it too.
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const LAYERS = [
  'common',
  'lib',
  'proposers',
  'activities',
  'workflows',
  'workers',
  'gpu-worker',
  'client',
  'ops',
  'cli',
  'dashboard',
  'test',
  'bench',
];

/** Who may import whom (besides itself). Anything not listed is out of bounds. */
const ALLOWED = {
  common: [],
  lib: ['common'],
  ops: ['common', 'lib'],
  proposers: ['common', 'lib'],
  activities: ['common', 'lib', 'proposers'],
  workflows: ['common'],
  'gpu-worker': ['common', 'lib'],
  workers: ['common', 'lib', 'ops', 'proposers', 'activities', 'gpu-worker'],
  client: ['common', 'lib', 'ops', 'workflows'],
  dashboard: ['common', 'lib', 'ops', 'client', 'workflows'],
  cli: ['common', 'lib', 'ops', 'client', 'workflows', 'workers', 'gpu-worker', 'dashboard'],
  // Benchmarks and tests are development tools: they may use every layer, and bench/ reuses test/'s
  // fault-injection kit (test/processes.ts).
  bench: LAYERS.filter((l) => l !== 'bench'),
  test: LAYERS.filter((l) => l !== 'test'),
};

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

function layerRule(layer) {
  const forbidden = LAYERS.filter((l) => l !== layer && !ALLOWED[layer].includes(l));
  const patterns = forbidden.map((l) => ({
    group: [`../${l}`, `../${l}/*`, `../../${l}`, `../../${l}/*`],
    message: `${layer}/ may import only from ${['itself', ...ALLOWED[layer]].join(', ')} (see docs/development.md, layers).`,
    // Workflows name their activities' types; erased imports cost nothing at run time.
    allowTypeImports: layer === 'workflows',
  }));
  const paths =
    layer === 'workflows'
      ? NODE_BUILTINS.map((name) => ({
          name,
          message: 'workflow code is deterministic: no Node built-ins (do I/O in an activity).',
        }))
      : layer === 'common'
        ? // Shared names, types and the config schema: no I/O (path arithmetic alone is allowed).
          NODE_BUILTINS.filter((name) => !['path', 'node:path'].includes(name)).map((name) => ({
            name,
            message: 'common/ does no I/O: read files in lib/ (e.g. lib/config-file.ts).',
          }))
        : [];
  return {
    files: [`${layer}/**/*.ts`],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { paths, patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'test/fixtures/**', 'examples/**', 'dashboard/public/**'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    plugins: { '@typescript-eslint': tseslint.plugin },
  },
  ...LAYERS.map(layerRule),
);
