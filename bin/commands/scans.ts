/**
 * `glyphscan scans reindex`: lists stored scans in their domains' scan index and names each domain's
 * newest assessed scan (actors/store/scan-index.ts), for scans stored before either existed; until
 * then such a domain's history and compliance comparison are answered by queries of `scans`.
 */
import { openDatabase } from "../../actors/store/database.ts";
import { reindexScans, type ReindexSummary } from "../../actors/store/scan-index.ts";
import type { Config } from "../../config/mod.ts";

export async function reindex(
  config: Config,
  opts: { batch?: number; progress?: { write(line: string): unknown } } = {},
): Promise<ReindexSummary> {
  const db = await openDatabase(config);
  try {
    return await reindexScans(db.collections, opts);
  } finally {
    await db.close();
  }
}

export function formatReindex(s: ReindexSummary): string {
  return (
    `scan index: ${s.scans} scans of ${s.domains} domains read, ${s.indexed} domains indexed, ` +
    `${s.assessed} named their assessed scan (${(s.ms / 1000).toFixed(1)} s)`
  );
}
