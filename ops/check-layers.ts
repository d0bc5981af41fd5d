/**
 * Enforces the one-direction layering: protocol ← config ← cluster ← actors ← (bin, ops, test).
 * A layer may import only from itself and the layers to its left. Run in `pretest`.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const allowed: Record<string, string[]> = {
  protocol: ["protocol"],
  config: ["config", "protocol"],
  cluster: ["cluster", "config", "protocol"],
  actors: ["actors", "cluster", "config", "protocol"],
};

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (path.endsWith(".ts")) yield path;
  }
}

const problems: string[] = [];
for (const [layer, may] of Object.entries(allowed)) {
  for (const file of tsFiles(join(root, layer))) {
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
      const target = relative(root, resolve(dirname(file), m[1]!)).split("/")[0]!;
      if (!may.includes(target))
        problems.push(`${relative(root, file)} imports ${m[1]} (${layer} may import only ${may.join(", ")})`);
    }
  }
}
if (problems.length > 0) {
  process.stderr.write(`layering violations:\n  ${problems.join("\n  ")}\n`);
  process.exit(1);
}
