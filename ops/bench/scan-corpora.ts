/**
 * The corpora `npm run bench:scan` can run on, behind one shape: the bundled demo corpus
 * (`--corpus demo`, ops/demo/corpus.ts, its ground truth built in) and the real corpus
 * (`--corpus real`, ops/real-corpus/: sites from real packages, scored against the reference's
 * checked-in ground truth).
 */
import { readFileSync } from "node:fs";
import { startCorpus, VARIANTS } from "../demo/corpus.ts";
import { GROUND_TRUTH, type GroundTruth } from "../real-corpus/reference.ts";
import { startRealCorpus } from "../real-corpus/server.ts";
import type { ScoredSite } from "./scan-score.ts";

export type BenchSite = ScoredSite & { url: string };

export type BenchCorpus = {
  /** One line for the report: what the corpus is made of. */
  label: string;
  hostResolverRules: string;
  policy: { allowHosts: string[]; hostMap: Record<string, string> };
  sites: BenchSite[];
  close(): Promise<void>;
};

export async function demoBenchCorpus(sites: number): Promise<BenchCorpus> {
  const corpus = await startCorpus({ sites });
  const mix = VARIANTS.map((v) => `${v} ${corpus.sites.filter((s) => s.variant === v).length}`).join(", ");
  return {
    label: `demo corpus: ${sites} sites (${mix}), images on every page`,
    hostResolverRules: corpus.hostResolverRules,
    policy: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } },
    sites: corpus.sites,
    close: () => corpus.close(),
  };
}

/** The real corpus's sites with the reference's ground truth (`only`: a subset, by site id). */
export async function realBenchCorpus(only?: readonly string[]): Promise<BenchCorpus> {
  const truth = (JSON.parse(readFileSync(GROUND_TRUTH, "utf8")) as GroundTruth).sites;
  const byId = new Map(truth.map((t) => [t.id, t]));
  const corpus = await startRealCorpus(only ? { only } : {});
  const sites = corpus.sites.map((site): BenchSite => {
    const t = byId.get(site.id);
    if (!t) throw new Error(`${site.id}: not in the ground truth; run npm run corpus:reference`);
    const used = new Set(t.usedFamilies);
    return {
      domain: site.host,
      url: site.url,
      expectedFiles: [...new Set(t.usedFiles.map((f) => f.sha256))].map((sha256) => ({ sha256 })),
      expectedUsedFamilies: t.usedFamilies,
      expectedDeclaredOnlyFamilies: t.declaredFamilies.filter((f) => !used.has(f)),
    };
  });
  const kinds = new Map<string, number>();
  for (const s of corpus.sites) kinds.set(s.kind, (kinds.get(s.kind) ?? 0) + 1);
  const mix = [...kinds].map(([k, n]) => `${k} ${n}`).join(", ");
  return {
    label: `real corpus: ${sites.length} sites from npm packages (${mix})`,
    hostResolverRules: corpus.hostResolverRules,
    policy: corpus.policy,
    sites,
    close: () => corpus.close(),
  };
}
