/**
 * Prompt text conditioning added before encoding (`shared/spec/sampling.md` §3;
 * `add_fps_info_to_text`, `add_motion_score_to_text` in `opensora/utils/inference.py`).
 *
 * @module
 */

/**
 * Strips the text, ends it with `"."`, and appends `" {fps} FPS."` unless it already ends with
 * `"<digits> FPS."`. The FPS value is purely textual; it should match the saving frame rate.
 *
 * @example
 * ```ts ignore
 * addFpsInfo("a red car", 24);          // "a red car. 24 FPS."
 * addFpsInfo("a red car. 16 FPS.", 24); // unchanged
 * ```
 */
export function addFpsInfo(text: string, fps: number): string {
  let s = text.trim();
  if (!s.endsWith(".")) s += ".";
  if (!/\d+ FPS\.$/.test(s)) s += ` ${fps} FPS.`;
  return s;
}

/**
 * Appends `" {score} motion score."`. The reference's `"dynamic"` score asks GPT-4o for a number;
 * Kino has no such service: pass a number (1–15, default config `4`).
 *
 * @example
 * ```ts ignore
 * addMotionScore(addFpsInfo("a red car", 24), 4);   // "a red car. 24 FPS. 4 motion score."
 * ```
 */
export function addMotionScore(text: string, score: number | string): string {
  if (score === "dynamic") {
    throw new RangeError(
      `motion score "dynamic" needs an external prompt-refinement service (GPT-4o in the ` +
        `reference); pass a number instead, e.g. 4`,
    );
  }
  return `${text} ${score} motion score.`;
}
