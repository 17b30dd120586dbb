/**
 * One place that decides whether GPU tests can run: it initialises the engine once, or marks
 * every GPU test ignored with the reason (visible in the test output, never silent).
 */
import { init, type Runtime } from "../engine/runtime.ts";

let rt: Runtime | null = null;
let reason = "";
try {
  rt = await init();
} catch (e) {
  reason = (e as Error).message;
  console.error(`GPU tests are skipped: ${reason}`);
}

/** The runtime (only call inside a test registered with {@linkcode gpuTest}). */
export function gpu(): Runtime {
  if (!rt) throw new Error(`no GPU: ${reason}`);
  return rt;
}

/** Registers a test that needs the GPU; ignored (with the reason in its name) when there is none. */
export function gpuTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  Deno.test({
    name: rt ? name : `${name} (skipped: no WebGPU adapter: ${reason})`,
    ignore: !rt,
    sanitizeResources: false,
    sanitizeOps: false,
    fn,
  });
}

/**
 * Runs `fn` with the storage-binding limit lowered to `bytes` (so that ops bind their tensors as
 * windows), then restores the limit in force before, also when `fn` throws.
 */
export async function withBindingLimit<T>(bytes: number, fn: () => T | Promise<T>): Promise<T> {
  const r = gpu();
  const before = r.setBindingLimit(bytes);
  try {
    return await fn();
  } finally {
    r.setBindingLimit(before);
  }
}

/**
 * Runs `fn` at the device's own binding limit, also under `KINO_MAX_BINDING` (for tests of the
 * executor's unwindowed behaviour: dispatch counts, pipeline reuse, peak memory).
 */
export function atDeviceLimit<T>(fn: () => T | Promise<T>): Promise<T> {
  return withBindingLimit(gpu().deviceMaxBinding, fn);
}

/** Path of the shared fixtures folder, or null (with the reason) when it is absent. */
export const FIXTURES: string | null = (() => {
  const p = new URL("../../shared/fixtures/", import.meta.url).pathname;
  try {
    Deno.statSync(p);
    return p;
  } catch {
    return null;
  }
})();

/** Registers a test that needs the GPU and `../shared/fixtures`. */
export function fixtureTest(name: string, fn: (dir: string) => void | Promise<void>): void {
  if (!FIXTURES) {
    Deno.test({ name: `${name} (skipped: ../shared/fixtures not found)`, ignore: true, fn() {} });
    return;
  }
  gpuTest(name, () => fn(FIXTURES!));
}
