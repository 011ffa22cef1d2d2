// The example target's Python packages (numpy), installed with pip when missing.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { execa } from 'execa';

export const EXAMPLES_DIR = fileURLToPath(new URL('../examples', import.meta.url));
export const TINY_LM_DIR = path.join(EXAMPLES_DIR, 'tiny-lm');

export async function pythonPackagesMissing(python = 'python3'): Promise<string | null> {
  const r = await execa(python, ['-c', 'import numpy; print(numpy.__version__)'], { reject: false });
  if (r.failed && (r as { code?: string }).code === 'ENOENT') return `${python} is not installed; install Python 3.10+`;
  return r.exitCode === 0 ? null : 'numpy is not installed for python3';
}

export async function ensurePythonDeps(log: (l: string) => void, python = 'python3'): Promise<void> {
  const missing = await pythonPackagesMissing(python);
  if (!missing) return;
  if (missing.includes('not installed; install Python')) throw new Error(missing);
  log(`Installing ${path.join(TINY_LM_DIR, 'requirements.txt')} with pip...`);
  const r = await execa(python, ['-m', 'pip', 'install', '--quiet', '-r', path.join(TINY_LM_DIR, 'requirements.txt')], {
    reject: false,
    all: true,
  });
  if (r.exitCode !== 0)
    throw new Error(
      `pip install failed: ${(r.all ?? '').split('\n').slice(-3).join(' | ')}. Install numpy for python3 yourself (python3 -m pip install numpy).`,
    );
}
