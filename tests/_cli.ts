/** Running a `cli/*.ts` entry point in a child process, as users run `deno task ...`. */

/** Runs `cli/<name>` (or an absolute path) with `args`; returns the exit code and all output. */
export async function runCli(cli: string, args: string[]): Promise<{ code: number; out: string }> {
  const path = cli.startsWith("/") ? cli : new URL(`../cli/${cli}`, import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", path, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** Throws `msg` (with the command's output) unless `cond` holds. */
export function expect(cond: boolean, msg: string, out = ""): void {
  if (!cond) throw new Error(`${msg}${out ? `\n--- output ---\n${out}` : ""}`);
}
