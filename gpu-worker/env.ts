import { SECRET_NAME } from '../common/config';

// The training subprocess's environment: an allowlist, not the worker's environment minus a few
// names, so an API key or token on the worker can never reach code the proposer wrote.
const PASS_THROUGH = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'TERM',
  'TMPDIR',
  'TZ',
  'PYTHONPATH',
  'VIRTUAL_ENV',
  'CONDA_PREFIX',
  'UV_CACHE_DIR',
  'UV_PYTHON',
  'HF_HOME',
  'HF_HUB_OFFLINE',
  'XDG_CACHE_HOME',
  'LD_LIBRARY_PATH',
  'CUDA_HOME',
  'CUDA_PATH',
  'NVIDIA_DRIVER_CAPABILITIES',
  'OMP_NUM_THREADS',
  // Certificates (run.setup installs packages through a proxy with its own CA on some clusters).
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
];

export function trainingEnv(configEnv: Record<string, string>, devices: string | null): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASS_THROUGH) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  // The config's env is the user's own choice for the run, but secrets belong to the worker alone.
  for (const [k, v] of Object.entries(configEnv)) if (!SECRET_NAME.test(k)) env[k] = v;
  // A CPU slot hides every GPU, so a run never lands on a device another slot owns.
  env.CUDA_VISIBLE_DEVICES = devices ?? '';
  // Device numbers in nvidia-smi's order (PCI bus), not CUDA's fastest-first, wherever a run counts GPUs.
  env.CUDA_DEVICE_ORDER = 'PCI_BUS_ID';
  env.PYTHONUNBUFFERED = '1';
  return env;
}
