// Reading a campaign config file (YAML or JSON) from disk; the schema and its checks are
// common/config.ts, which does no I/O.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ConfigError, parseConfig, type CampaignConfig } from '../common/config';

export function loadConfig(file: string): { config: CampaignConfig; baseDir: string } {
  if (!existsSync(file)) throw new ConfigError([`file not found: ${file}; create one with \`nightlab init\``], file);
  const text = readFileSync(file, 'utf8');
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new ConfigError(
      [`cannot parse ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`],
      file,
    );
  }
  return { config: parseConfig(raw, file), baseDir: path.dirname(path.resolve(file)) };
}
