// A figure printer that keeps benchmark lines comparable (the server: ops/server.ts serverForTools).
/** One line per system: its name, then `label value unit` pairs. */
export function figure(system: string, values: Record<string, string>): void {
  console.log(
    `${system.padEnd(13)} ${Object.entries(values)
      .map(([k, v]) => `${k} ${v}`)
      .join('  ')}`,
  );
}
