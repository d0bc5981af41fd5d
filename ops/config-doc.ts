/**
 * Prints the config reference as a Markdown table, from the schema itself. The README holds
 * its output between markers; a test fails when the two drift apart.
 */
import { configFields } from "../config/mod.ts";

export function configTable(): string {
  const rows = configFields().map((f) => {
    const def = f.defaultValue === undefined ? "–" : `\`${JSON.stringify(f.defaultValue)}\``;
    return `| \`${f.path.join(".")}\` | \`${f.env}\` | ${def} | ${f.description.replaceAll("|", "\\|")} |`;
  });
  return ["| key | environment | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

if (import.meta.main) process.stdout.write(`${configTable()}\n`);
