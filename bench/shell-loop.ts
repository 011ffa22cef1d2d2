// The baseline every Nightlab figure is compared with: autoresearch's loop as a plain bash script
// in a scratch clone. Per experiment: [think] → edit a setting → git commit → run the trainer →
// parse the metric from the summary block → keep, or git reset --hard → a results.tsv line.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { git } from '../lib/git';
import { tempDir } from './lib';

/**
 * The loop; `$THINK` seconds of sleep before each edit stand in for the agent's thinking.
 * Each run's start and end (epoch ms, the trainer's bench_t0/bench_t1) go to spans.tsv.
 */
const LOOP_SH = String.raw`#!/usr/bin/env bash
set -euo pipefail
N=$1; THINK=\${2:-0}
export BENCH_SLEEP=\${BENCH_SLEEP:-0}
printf 'commit\tval_bpb\tmemory_gb\tstatus\tdescription\n' > results.tsv
: > spans.tsv
sh run.sh > run.log 2>&1
best=$(awk '/^---$/{b=1;next} b&&/^val_bpb:/{v=$2} END{print v}' run.log)
knobs=(LEARNING_RATE WIDTH DEPTH WARMUP); factors=(0.5 0.67 0.8 1.25 1.5 2)
start=$(date +%s%3N)
for ((i = 1; i <= N; i++)); do
  if [ "$THINK" != 0 ]; then sleep "$THINK"; fi
  k=\${knobs[RANDOM % 4]}; f=\${factors[RANDOM % 6]}
  old=$(sed -n "s/^$k = //p" train.py)
  new=$(awk -v x="$old" -v f="$f" 'BEGIN{ if (x ~ /[.eE]/) { y=sprintf("%.3g", x*f); if (y !~ /[.eE]/) y=y ".0"; print y } else { y=int(x*f+0.5); if (y==x) y=x+1; if (y<1) y=1; if (y==x) y=x+1; print y } }')
  sed -i "s/^$k = .*/$k = $new/" train.py
  git commit -q -am "$k $old -> $new"
  sh run.sh > run.log 2>&1 || true
  m=$(awk '/^---$/{b=1;next} b&&/^val_bpb:/{v=$2} END{print v}' run.log)
  printf '%s\t%s\n' "$(sed -n 's/^bench_t0: //p' run.log)" "$(sed -n 's/^bench_t1: //p' run.log)" >> spans.tsv
  sha=$(git rev-parse --short HEAD)
  if [ -n "$m" ] && awk -v m="$m" -v b="$best" 'BEGIN{exit !(m < b)}'; then
    best=$m; st=keep
  else
    st=discard; git reset -q --hard HEAD~1
  fi
  printf '%s\t%s\t0.0\t%s\t%s\n' "$sha" "\${m:-0.000000}" "$st" "$k $old -> $new" >> results.tsv
done
end=$(date +%s%3N)
echo "loop_ms $((end - start))"
`.replaceAll('\\${', '${');

export interface ShellLoopResult {
  experiments: number;
  kept: number;
  /** Wall time of the N experiments (the baseline run excluded). */
  wallMs: number;
  spans: { t0: number; t1: number }[];
}

/** Runs the loop in a scratch clone of `repo` (the clone's git work is the loop's own). */
export async function shellLoop(
  repo: string,
  n: number,
  opts: { thinkSec?: number; sleepSec?: number } = {},
): Promise<ShellLoopResult> {
  const dir = path.join(tempDir('nightlab-bench-shell-'), 'clone');
  await git(path.dirname(dir)).raw(['clone', '--quiet', repo, dir]);
  const script = path.join(path.dirname(dir), 'loop.sh');
  writeFileSync(script, LOOP_SH);
  const r = await execa('bash', [script, String(n), String(opts.thinkSec ?? 0)], {
    cwd: dir,
    env: {
      BENCH_SLEEP: String(opts.sleepSec ?? 0),
      GIT_AUTHOR_NAME: 'bench',
      GIT_AUTHOR_EMAIL: 'bench@localhost',
      GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@localhost',
    },
  });
  const wallMs = Number(/loop_ms (\d+)/.exec(r.stdout)![1]);
  const results = (await execa('cat', ['results.tsv'], { cwd: dir })).stdout.split('\n').slice(1).filter(Boolean);
  const spans = (await execa('cat', ['spans.tsv'], { cwd: dir })).stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [t0, t1] = l.split('\t').map(Number);
      return { t0, t1 };
    });
  return {
    experiments: results.length,
    kept: results.filter((l) => l.split('\t')[3] === 'keep').length,
    wallMs,
    spans,
  };
}

/** The trainer alone, `n` times in a row: what one "no-op" run costs on this machine (ms each). */
export async function trainerAloneMs(repo: string, n: number): Promise<number> {
  const r = await execa(
    'bash',
    ['-c', `s=$(date +%s%3N); for ((i=0;i<${n};i++)); do sh run.sh >/dev/null; done; echo $(( $(date +%s%3N) - s ))`],
    { cwd: repo, env: { BENCH_SLEEP: '0' } },
  );
  return Number(r.stdout.trim()) / n;
}
