/**
 * The import check of `pretest` on a small tree built for it: type-only imports, re-exports,
 * dynamic imports and `import("…")` types are all seen; arrows between actor folders are held;
 * benches may not import test code; a cycle of type-only imports is found; an import written
 * inside a string is not taken for one.
 */
import test from "ava";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { checkLayers, importsOf, ruleBroken } from "../../ops/check-layers.ts";

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "glyphscan-layers-"));
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}

test("every violation is reported with its file, line and rule", (t) => {
  const root = tree({
    "protocol/a.ts": 'import type { B } from "../cluster/b.ts";\nexport type A = B;\n',
    "protocol/e.ts": 'export const text = `import { x } from "../actors/api/c.ts"`;\n',
    "cluster/b.ts": 'export type B = number;\nexport { c } from "../actors/api/c.ts";\n',
    "cluster/p.ts": 'import type { Q } from "./q.ts";\nexport type P = Q[];\n',
    "cluster/q.ts": 'import type { P } from "./p.ts";\nexport type Q = { p: P };\n',
    "actors/api/c.ts": 'import { d } from "../store/d.ts";\nexport const c = d;\n',
    "actors/store/d.ts": 'import type { C } from "../api/types.ts";\nexport const d = 1 as C;\n',
    "actors/api/types.ts": "export type C = number;\n",
    "actors/scanner/s.ts": 'export const load = () => import("../store/d.ts");\n',
    "actors/results/r.ts": 'import { f } from "../frontier/f.ts";\nexport const r = f;\n',
    "actors/frontier/f.ts": 'export let f: typeof import("../compose.ts") | undefined;\n',
    "actors/compose.ts": 'import { c } from "./api/c.ts";\nimport { r } from "./results/r.ts";\nexport { c, r };\n',
    "ops/bench/x.ts": 'import { start } from "../../test/harness/servers.ts";\nvoid start;\n',
    "ops/bench/y.ts": 'import { start } from "../harness/servers.ts";\nvoid start;\n',
    "ops/harness/servers.ts": "export const start = 1;\n",
    "test/harness/servers.ts": 'export * from "../../ops/harness/servers.ts";\n',
  });
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { problems } = checkLayers(root);
  t.deepEqual(
    problems.map((p) => `${p.file}:${p.line} ${p.message}`),
    [
      "actors/compose.ts:1 import cycle among 3 files (type-only imports count), e.g. actors/compose.ts → actors/results/r.ts → actors/frontier/f.ts → actors/compose.ts; all: actors/compose.ts, actors/frontier/f.ts, actors/results/r.ts",
      "actors/frontier/f.ts:1 imports actors/compose.ts: no actor imports the node wiring (actors/compose.ts, actors/wiring/)",
      "actors/scanner/s.ts:1 imports actors/store/d.ts: actors/scanner may import only no other actor folder",
      "actors/store/d.ts:1 imports actors/api/types.ts: actors/store may import only no other actor folder",
      "cluster/b.ts:2 imports actors/api/c.ts: cluster/ may import only cluster, config, protocol",
      "cluster/p.ts:1 import cycle among 2 files (type-only imports count), e.g. cluster/p.ts → cluster/q.ts → cluster/p.ts; all: cluster/p.ts, cluster/q.ts",
      "ops/bench/x.ts:1 imports test/harness/servers.ts: only test/ may import test/ (ops/ shares servers through ops/harness)",
      "protocol/a.ts:1 imports cluster/b.ts: protocol/ may import only protocol",
    ],
  );
});

test("imports are read by the parser: type-only, re-exports, dynamic, import types; not strings", (t) => {
  const source = [
    'import type { A } from "./a.ts";',
    'import "./side-effect.ts";',
    'export * from "./all.ts";',
    'export { b } from "./b.ts";',
    'const c = await import("./c.ts");',
    'type D = import("./d.ts").D;',
    "const s = \"import x from './not-an-import.ts'\";",
    'import { readFileSync } from "node:fs";',
  ].join("\n");
  t.deepEqual(
    importsOf("x.ts", source).map((i) => `${i.line} ${i.spec}`),
    ["1 ./a.ts", "2 ./side-effect.ts", "3 ./all.ts", "4 ./b.ts", "5 ./c.ts", "6 ./d.ts"],
  );
});

test("the arrows: api reads the store, results the frontier, nothing imports api; tests may import anything", (t) => {
  t.is(ruleBroken("actors/api/server.ts", "actors/store/database.ts"), null);
  t.is(ruleBroken("actors/results/results-actor.ts", "actors/licensing/compliance.ts"), null);
  t.is(ruleBroken("actors/wiring/scanner.ts", "actors/scanner/browser-pool.ts"), null);
  t.is(ruleBroken("actors/api/server.ts", "actors/api/auth.ts"), null);
  t.regex(ruleBroken("actors/results/results-actor.ts", "actors/api/server.ts") ?? "", /actors\/results may import/);
  t.regex(ruleBroken("actors/api/server.ts", "actors/scanner/ssrf.ts") ?? "", /actors\/api may import/);
  t.regex(ruleBroken("actors/coordinator/x.ts", "actors/wiring/redis.ts") ?? "", /node wiring/);
  t.is(ruleBroken("test/e2e/pipeline.test.ts", "actors/compose.ts"), null);
  t.is(ruleBroken("bin/glyphscan.ts", "ops/demo/corpus.ts"), null);
  t.regex(ruleBroken("bin/glyphscan.ts", "test/helpers/stack.ts") ?? "", /only test\//);
  t.regex(ruleBroken("config/mod.ts", "cluster/log.ts") ?? "", /config\/ may import only config, protocol/);
});
