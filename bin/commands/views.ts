/**
 * `glyphscan views rebuild`: fills the lookup view in Redis (actors/store/lookup-view.ts) from
 * MongoDB, e.g. after Redis was flushed or replaced, or after an outage kept writers from writing it.
 * Lookups answer without it (from MongoDB, slower); the rebuild is safe while writers run.
 */
import { openDatabase } from "../../actors/store/database.ts";
import { rebuildLookupView, type ViewRebuildSummary } from "../../actors/store/lookup-rebuild.ts";
import { openLookupView } from "../../actors/store/lookup-view.ts";
import type { Config } from "../../config/mod.ts";

export async function rebuildViews(
  config: Config,
  opts: { batch?: number; chunk?: number; progress?: { write(line: string): unknown } } = {},
): Promise<ViewRebuildSummary> {
  const db = await openDatabase(config);
  // Its own connection to the view: a batch of a thousand entries may take longer than a lookup may wait.
  const view = openLookupView(config, { commandTimeoutMs: 30_000 });
  try {
    return await rebuildLookupView({ ...db.collections, lookupView: view }, opts);
  } finally {
    view?.close();
    await db.close();
  }
}

export function formatViewRebuild(s: ViewRebuildSummary): string {
  const rate = s.ms > 0 ? Math.round((s.written / s.ms) * 1000) : 0;
  return (
    `lookup view: ${s.written} domains written, ${s.failed} failed, of ~${s.total} in MongoDB ` +
    `(${(s.ms / 1000).toFixed(1)} s, ${rate}/s)`
  );
}
