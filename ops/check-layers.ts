/**
 * Enforces the import arrows, run in `pretest`: the layers (protocol ← config ← cluster ← actors
 * ← bin, ops, test), the arrows between actor folders, and no import cycle, type-only included.
 * Imports are read with the TypeScript parser, so `import type`, `export … from`, dynamic
 * `import()` and `import("…")` types are all seen. Prints each violation with its file and rule.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** What each top-level folder may import besides itself; absent: anything but `test/`. */
const LAYERS: Record<string, readonly string[]> = {
  protocol: [],
  config: ["protocol"],
  cluster: ["config", "protocol"],
  actors: ["cluster", "config", "protocol"],
  types: [],
};
/** Tests may import anything; benches and tools share servers through ops/harness, never test/. */
const ANYTHING_BUT_TEST = ["bin", "ops"];

/**
 * What each actor folder may import of the other actor folders. `store` is the bottom (documents
 * and collections); the scanner and coordinator stand alone; nothing imports `api`. The wiring
 * (`actors/compose.ts`, `actors/wiring/`) may import every actor and no actor imports it.
 */
const ACTOR_ARROWS: Record<string, readonly string[]> = {
  store: [],
  scanner: [],
  coordinator: [],
  licensing: ["store"],
  frontier: ["store"],
  results: ["frontier", "licensing", "store"],
  // Submissions are normalised as the coordinator does, and a rescan is a frontier write.
  api: ["coordinator", "frontier", "store"],
};
const WIRING = ["compose.ts", "wiring"];

/**
 * Imports against the rules that are known and meant to go, each with what would remove it. A
 * debt is left out of the rule and the cycle check; one that no longer exists is reported so that
 * the list only shrinks.
 */
const KNOWN_DEBTS: ReadonlyArray<{ from: string; to: string; why: string }> = [];

export interface Problem {
  file: string;
  line: number;
  message: string;
}

/** Every relative module a file names: static, type-only, re-exports, dynamic and type imports. */
export function importsOf(file: string, source: string): Array<{ spec: string; line: number }> {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Array<{ spec: string; line: number }> = [];
  const add = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node))
      out.push({ spec: node.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      add(node.moduleReference.expression);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out.filter((i) => i.spec.startsWith("./") || i.spec.startsWith("../"));
}

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (path.endsWith(".ts")) yield path;
  }
}

/** The rule an import from `from` to `to` (both relative to the root, `/`-separated) breaks, or null. */
export function ruleBroken(from: string, to: string): string | null {
  const [fromTop = "", ...fromRest] = from.split("/");
  const toTop = to.split("/")[0] ?? "";
  if (fromTop === "test") return null;
  if (toTop === "test") return `only test/ may import test/ (${fromTop}/ shares servers through ops/harness)`;
  if (ANYTHING_BUT_TEST.includes(fromTop)) return null;
  const layer = LAYERS[fromTop];
  if (!layer) return `${fromTop}/ has no layer in ops/check-layers.ts`;
  if (toTop !== fromTop && !layer.includes(toTop))
    return `${fromTop}/ may import only ${[fromTop, ...layer].join(", ")}`;
  if (fromTop === "actors" && toTop === "actors") return actorRule(fromRest, to.split("/").slice(1));
  return null;
}

function actorRule(from: readonly string[], to: readonly string[]): string | null {
  // A file directly in actors/ (compose.ts) counts as a folder of its own.
  const fromFolder = from[0]!;
  const toFolder = to[0]!;
  if (fromFolder === toFolder) return null;
  if (WIRING.includes(fromFolder)) return null;
  if (WIRING.includes(toFolder)) return "no actor imports the node wiring (actors/compose.ts, actors/wiring/)";
  const may = ACTOR_ARROWS[fromFolder];
  if (!may) return `actors/${fromFolder} has no arrows in ops/check-layers.ts ACTOR_ARROWS`;
  if (!may.includes(toFolder))
    return `actors/${fromFolder} may import only ${may.length ? may.map((f) => `actors/${f}`).join(", ") : "no other actor folder"}`;
  return null;
}

/** Strongly connected components of more than one file (or a file importing itself): the cycles. */
function cycles(graph: Map<string, Set<string>>): Array<{ members: string[]; path: string[] }> {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: Array<{ members: string[]; path: string[] }> = [];
  const connect = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) !== idx.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || graph.get(v)?.has(v))
      found.push({ members: scc.sort(), path: cyclePath(graph, new Set(scc)) });
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) connect(v);
  return found;
}

/** One cycle through the component, as the path of imports from its first file back to it. */
function cyclePath(graph: Map<string, Set<string>>, scc: Set<string>): string[] {
  const start = [...scc].sort()[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (w === start) {
        const path = [start];
        for (let at = v; at !== start; at = cameFrom.get(at)!) path.splice(1, 0, at);
        return [...path, start];
      }
      if (scc.has(w) && !cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** The folders that hold our TypeScript (tsconfig.json `include`). */
const SOURCE_FOLDERS = ["actors", "bin", "cluster", "config", "ops", "protocol", "test", "types"];

/** Checks every .ts file under `root` (the repository): the violations, sorted, and the debts no longer owed. */
export function checkLayers(root: string): { problems: Problem[]; paid: string[] } {
  const problems: Problem[] = [];
  const owed = new Set<string>();
  const graph = new Map<string, Set<string>>();
  const rel = (p: string) => relative(root, p).split(sep).join("/");
  const files = SOURCE_FOLDERS.filter((f) => existsSync(join(root, f))).flatMap((f) => [...tsFiles(join(root, f))]);
  for (const path of files) {
    const file = rel(path);
    const edges = new Set<string>();
    graph.set(file, edges);
    for (const { spec, line } of importsOf(file, readFileSync(path, "utf8"))) {
      const target = rel(resolve(dirname(path), spec));
      if (KNOWN_DEBTS.some((d) => d.from === file && d.to === target)) {
        owed.add(`${file} ${target}`);
        continue;
      }
      edges.add(target);
      const rule = ruleBroken(file, target);
      if (rule) problems.push({ file, line, message: `imports ${target}: ${rule}` });
    }
  }
  for (const { members, path } of cycles(graph)) {
    const message = `import cycle among ${members.length} files (type-only imports count), e.g. ${path.join(" → ")}; all: ${members.join(", ")}`;
    problems.push({ file: path[0]!, line: 1, message });
  }
  const paid = KNOWN_DEBTS.filter((d) => !owed.has(`${d.from} ${d.to}`)).map((d) => `${d.from} → ${d.to}`);
  return { problems: problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line), paid };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(import.meta.dirname, ".."));
  const { problems, paid } = checkLayers(root);
  for (const debt of paid) process.stderr.write(`check-layers: ${debt} is gone: remove it from KNOWN_DEBTS\n`);
  if (problems.length > 0) {
    process.stderr.write(`import rule violations (ops/check-layers.ts):\n`);
    for (const p of problems) process.stderr.write(`  ${p.file}:${p.line} ${p.message}\n`);
    process.exit(1);
  }
}
